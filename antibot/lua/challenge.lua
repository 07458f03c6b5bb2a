-- challenge.lua: admit one challenge request and measure the sale's challenge rate.
--
-- The per-user and per-IP windows are the same ones purchase.lua counts (one budget for a
-- shopper's calls on a sale). The rate is challenges issued in the current or the previous
-- second, whichever is larger, by the Redis clock.
--
-- KEYS: 1 rate hash  2 user rate window  3 IP rate window (unused ones: the rate hash)
-- ARGV: 1 user limit (0: off)  2 IP limit (0: off)  3 window seconds
-- Returns {status, rate, now_ms, retry_after_ms} with status OK or RATE_LIMITED.

local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_s = tonumber(ARGV[3])

local function over_limit(key, limit)
    if limit <= 0 then
        return false
    end
    local hits = redis.call('INCR', key)
    if hits == 1 then
        redis.call('EXPIRE', key, window_s)
    end
    return hits > limit
end
for index, key in ipairs({KEYS[2], KEYS[3]}) do
    if over_limit(key, tonumber(ARGV[index])) then
        local ttl = redis.call('PTTL', key)
        if ttl < 0 then ttl = window_s * 1000 end
        return {'RATE_LIMITED', 0, now_ms, ttl}
    end
end

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
return {'OK', math.max(count, previous), now_ms, 0}
