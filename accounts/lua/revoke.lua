-- Refuse every token of a user issued until now: one atomic call on one key's slot, so the
-- same script runs on one Redis and on a Redis Cluster (PUBLISH reaches every node there).
-- KEYS[1] the revocations hash (user id -> "not before", Redis-clock ms)
-- ARGV[1] user id; ARGV[2] the hash's lifetime in seconds; ARGV[3] the channel
-- Returns the "not before" instant (ms).
local not_before = now_ms_of(redis.call('TIME')) + 1
redis.call('HSET', KEYS[1], ARGV[1], not_before)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], '{"user_id": ' .. ARGV[1] .. ', "not_before_ms": ' .. not_before .. '}')
return not_before
