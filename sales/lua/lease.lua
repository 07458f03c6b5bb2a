-- lease.lua: lease up to N tokens of a sale's token bucket at once, by the Redis clock.
--
-- The sale's bucket: capacity and refill per second from the meta hash, tokens refilled by
-- the time elapsed on the Redis clock since the last take, fractions kept. A web process
-- calls this once per batch and hands the granted tokens out locally (sales/funnel.py),
-- answering RATE_LIMITED itself when it has none; it drops unused tokens when its lease
-- ends (LEASE_SECONDS), so no process can save tokens up for a burst, and a process that
-- dies takes only its unspent tokens with it: the bucket refills anyway.
-- Across P processes leasing at most N each, the admitted count in any interval T is at most
-- capacity + rate x T + P x N (the tokens held when the interval starts).
--
-- KEYS: 1 meta  2 bucket
-- ARGV: 1 tokens wanted (N >= 1)
-- Returns {granted, retry_after_ms, now_ms}:
--   granted >= 1: that many tokens are the caller's (granted <= N, retry_after_ms 0);
--   granted 0: the bucket holds less than one token; retry_after_ms until it holds one;
--   granted -1: no such sale (the meta hash is missing).

local now_ms = now_ms_of(redis.call('TIME'))
local meta = redis.call('HMGET', KEYS[1], 'bucket_capacity', 'bucket_refill_per_second', 'ends_at_ms')
if not meta[1] then
    return {-1, 0, now_ms}
end
local capacity = tonumber(meta[1])
local refill_per_ms = tonumber(meta[2]) / 1000
local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'at_ms')
local tokens = tonumber(bucket[1]) or capacity
local at_ms = tonumber(bucket[2]) or now_ms
tokens = math.min(capacity, tokens + math.max(0, now_ms - at_ms) * refill_per_ms)
local granted = math.min(tonumber(ARGV[1]), math.floor(tokens))
if granted < 1 then
    redis.call('HSET', KEYS[2], 'tokens', tokens, 'at_ms', now_ms)
    return {0, math.ceil((1 - tokens) / refill_per_ms), now_ms}
end
redis.call('HSET', KEYS[2], 'tokens', tokens - granted, 'at_ms', now_ms)
if not bucket[1] then
    -- As purchase.lua did: an hour past the sale's end (never in the past: a late lease
    -- would delete the bucket it just wrote).
    redis.call('PEXPIRE', KEYS[2], math.max(0, tonumber(meta[3]) - now_ms) + 3600000)
end
return {granted, 0, now_ms}
