-- sale_state.lua: what a web process needs to know of a sale, in one round trip.
--
-- KEYS: 1 meta  2 stock
-- Returns {meta as a flat field/value list (empty: no such sale), remaining, now_ms}:
-- the stock and the Redis clock come with the meta, so the process can judge the window
-- by its own clock corrected to Redis's and knows the stock as of now_ms.
return {
    redis.call('HGETALL', KEYS[1]),
    tonumber(redis.call('GET', KEYS[2]) or '-1'),
    now_ms_of(redis.call('TIME')),
}
