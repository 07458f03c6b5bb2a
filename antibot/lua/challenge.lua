-- challenge.lua: count one challenge issued in a scope and say the scope's challenge rate.
--
-- The rate is challenges issued in the current or the previous second, whichever is larger,
-- by the Redis clock; it raises the difficulty (antibot/challenges.py). Who may ask how often
-- is the caller's to decide before calling (sales/known.py counts the per-user and per-IP
-- windows in process).
--
-- KEYS: 1 rate hash
-- Returns {now_ms, rate}.

local now = redis.call('TIME')
local now_ms = now_ms_of(now)
local second = tonumber(now[1])
local state = redis.call('HMGET', KEYS[1], 'second', 'count', 'previous')
local at, count, previous = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
if at == second then
    count = count + 1
elseif at == second - 1 then
    previous, count = count, 1
else
    previous, count = 0, 1
end
redis.call('HSET', KEYS[1], 'second', second, 'count', count, 'previous', previous)
redis.call('EXPIRE', KEYS[1], 5)
return {now_ms, math.max(count, previous)}
