-- release.lua: give a won unit back to the sale, atomically (an order cancelled or unpaid).
--
-- Only the unit the buyers hash says this order holds can go back, so a release replayed
-- after a crash returns nothing twice. The buyer is remembered in the returned hash: one
-- order per user per sale stays true in PostgreSQL, so purchase.lua keeps them out.
-- Invariant I1 holds across it: stock +1, buyers -1.
--
-- KEYS: 1 meta  2 stock  3 buyers  4 returned buyers
-- ARGV: 1 user id  2 order id  3 events channel
-- Returns {status, remaining} with status RETURNED or NOT_HELD.

local user, order_id = ARGV[1], ARGV[2]
if redis.call('HGET', KEYS[3], user) ~= order_id then
    return {'NOT_HELD', tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local now_ms = now_ms_of(redis.call('TIME'))
redis.call('HDEL', KEYS[3], user)
redis.call('HSET', KEYS[4], user, order_id)
local remaining = redis.call('INCR', KEYS[2])
local meta = redis.call('HMGET', KEYS[1], 'product_id', 'sale_id')
-- The stock-return event: same shape as a purchase's (the order id included: the buyer
-- keeps hearing ALREADY_PURCHASED with it); remaining went up.
redis.call('PUBLISH', ARGV[3], cjson.encode({
    product_id = tonumber(meta[1]), sale_id = tonumber(meta[2]), buyer = tonumber(user),
    remaining = remaining, timestamp = now_ms, order_id = order_id,
}))
return {'RETURNED', remaining}
