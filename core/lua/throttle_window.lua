-- A fixed window counter shared by every process: add ARGV[2] to KEYS[1], whose window ends
-- ARGV[1] ms after its first count. ARGV[2] = 0 only reads (and starts no window).
-- Returns {count, ms until the window ends (0: no window)}.
local add = tonumber(ARGV[2])
if add == 0 then
  local count = tonumber(redis.call('GET', KEYS[1]) or '0')
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then ttl = 0 end
  return {count, ttl}
end
local count = redis.call('INCRBY', KEYS[1], add)
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
