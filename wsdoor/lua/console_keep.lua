-- console_keep.lua: the publisher of a sale keeps its last reading and, when asked, appends a
-- point to the sale's series (wsdoor/console.py), only while the sale is loaded (as
-- console_claim.lua).
--
-- KEYS: 1 meta  2 last reading  3 series
-- ARGV: 1 reading (JSON)  2 point (JSON, or '' to keep none)  3 kept for (ms)  4 series' length
-- Returns 1 when written, -1 when the sale is not loaded.

if redis.call('EXISTS', KEYS[1]) == 0 then
    return -1
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
if ARGV[2] ~= '' then
    redis.call('RPUSH', KEYS[3], ARGV[2])
    redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 1
