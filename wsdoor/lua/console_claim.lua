-- console_claim.lua: a ws process counts its sockets of a sale and takes (or keeps) the lease
-- to publish the sale's console point this second (wsdoor/console.py).
--
-- Nothing is written for a sale that is not loaded: a sale reset or deleted (a rehearsal's
-- shadow, cleaned up) leaves no console keys behind, whatever a recorder still believes.
--
-- KEYS: 1 meta  2 sockets (hash: process token -> "<sockets>:<now_ms>")  3 publisher lease
-- ARGV: 1 process token  2 own sockets  3 now_ms  4 sockets' expiry (ms)  5 lease (ms)
-- Returns 1: this process publishes; 0: another one does; -1: the sale is not loaded.

if redis.call('EXISTS', KEYS[1]) == 0 then
    return -1
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[5]) then
    return 1
end
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
    return 0
end
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 1
