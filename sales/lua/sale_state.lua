-- sale_state.lua: what a web process needs to know of a sale, in one round trip.
--
-- KEYS: 1 meta  2 stock  3 the line's state (a queue-mode sale's; line.lua)
-- Returns {meta as a flat field/value list (empty: no such sale), remaining, now_ms, line}:
-- the stock and the Redis clock come with the meta, so the process can judge the window
-- by its own clock corrected to Redis's and knows the stock as of now_ms. line is
-- {joined, served, at_ms, pre_queue, seed, measured}, each false where absent; the seed
-- only once the sale started (before, only its commitment is public, in the meta).
local now_ms = now_ms_of(redis.call('TIME'))
local line = redis.call('HMGET', KEYS[3], 'joined', 'served', 'at_ms', 'pre_queue', 'seed', 'measured')
local starts_at_ms = tonumber(redis.call('HGET', KEYS[1], 'starts_at_ms'))
if not starts_at_ms or now_ms < starts_at_ms then
    line[5] = false
end
return {
    redis.call('HGETALL', KEYS[1]),
    tonumber(redis.call('GET', KEYS[2]) or '-1'),
    now_ms,
    line,
}
