-- holders.lua: who holds a unit of the sale, or held one that went back (release.lua): every
-- such buyer's later answer is ALREADY_PURCHASED with their order id.
--
-- KEYS: 1 buyers  2 returned buyers
-- ARGV: 1 a user id, or '' for every holder
-- Returns the user's order id (false: none), or {buyers flat list, returned flat list}.
if ARGV[1] ~= '' then
    return redis.call('HGET', KEYS[1], ARGV[1]) or redis.call('HGET', KEYS[2], ARGV[1])
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
