-- idempotency_begin.lua: claim an Idempotency-Key for a request, or return what holds it.
--
-- KEYS: 1 idempotency record
-- ARGV: 1 the in-flight record (JSON)  2 in-flight lifetime in seconds
-- Returns the existing record (an answer, or another request's in-flight marker), or false
-- when this request now holds the key. purchase.lua replaces the marker with its answer.
local held = redis.call('GET', KEYS[1])
if held then
    return held
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return false
