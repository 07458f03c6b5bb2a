-- clock.lua: put before every script that reads the Redis clock (core/redis_store.py's
-- lua_script does): TIME's {seconds, microseconds} as the milliseconds the sale window, the
-- events and the leases are measured in.
local function now_ms_of(time)
    return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
