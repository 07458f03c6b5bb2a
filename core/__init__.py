"""The foundation every app stands on: errors and their one handler, the hot-path API base,
the Redis clients and Lua scripts, per-process metric objects. It imports no app."""
