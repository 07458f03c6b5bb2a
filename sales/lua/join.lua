-- join.lua: a shopper joins a queue-mode sale's line, or reads their place, atomically, by
-- the Redis clock. The line's rules are line.lua's (put before this script).
--
-- One place per account: a shopper who holds a number hears it again, unless their turn
-- passed (then a join gives them a new number at the back). Numbers are 1, 2, ... in the
-- order joins reach this script: gap-free, never reused (the counter is in the line's state
-- hash, kept with the sale's data: append-only, so a restart keeps the line).
--
-- Sequencing: a join that gives a number is appended to the sale's log with the next
-- sequence number, in this same call (as purchase.lua appends its attempts): an entry
-- {"kind":"join","number","outcome","sale","seq","shopper","time_ms"}, outcome the place's
-- status word (pre_queue, waiting, admitted).
--
-- A shopper who holds a unit of the sale (or held one that went back) hears
-- ALREADY_PURCHASED with their order id, as purchase.lua answers them, and gets no place.
--
-- KEYS: 1 meta  2 stock  3 line (user -> number)  4 the line's state (line.lua)
--       5 the log stream  6 the log's counter  7 buyers  8 returned buyers
-- ARGV: 1 user id  2 'join' or 'place'  3 turn seconds  4 crowd interval ms
--       5 the shopper's salted hash for the log ('': the log is off)
-- Returns {status, number, position, served, joined, rate, measured, now_ms, created, seq,
-- entry, order_id}:
--   status: WAITING, ADMITTED, PRE_QUEUE (before the start), TURN_PASSED (place only),
--           NOT_IN_LINE (place only), NOT_OPEN (before the line opens), SOLD_OUT, ENDED,
--           NOT_QUEUED (the sale admits directly), NO_SALE;
--   served, rate and measured as strings (fractions); created is 1 when this call gave the
--   number; seq and entry the log's (-1 and '' when nothing was appended); order_id the
--   buyer's for ALREADY_PURCHASED ('' otherwise).

local now_ms = now_ms_of(redis.call('TIME'))
local meta = redis.call('HMGET', KEYS[1], 'starts_at_ms', 'ends_at_ms', 'admission', 'pre_queue_opens_at_ms',
    'serving_rate', 'crowd_factor', 'sale_id')
if not meta[1] then
    return {'NO_SALE', 0, 0, '0', 0, '0', '0', now_ms, 0, -1, '', ''}
end
if meta[3] ~= 'queue' then
    return {'NOT_QUEUED', 0, 0, '0', 0, '0', '0', now_ms, 0, -1, '', ''}
end
local bought = redis.call('HGET', KEYS[7], ARGV[1]) or redis.call('HGET', KEYS[8], ARGV[1])
if bought then
    return {'ALREADY_PURCHASED', 0, 0, '0', 0, '0', '0', now_ms, 0, -1, '', bought}
end
local starts_at_ms, ends_at_ms = tonumber(meta[1]), tonumber(meta[2])
local opens_at_ms = tonumber(meta[4]) or starts_at_ms
local remaining = tonumber(redis.call('GET', KEYS[2]) or '0')
local rate = line_rate(tonumber(meta[5]) or 0, tonumber(meta[6]) or 0, remaining, tonumber(ARGV[4]))

local words = {PRE_QUEUE = 'pre_queue', WAITING = 'waiting', ADMITTED = 'admitted'}

local function said(status, number, position, served, joined, measured, created)
    local seq, entry = -1, ''
    if created == 1 and ARGV[5] ~= '' then
        seq = redis.call('INCR', KEYS[6]) - 1
        entry = '{"kind":"join","number":' .. number .. ',"outcome":"' .. words[status] .. '","sale":' .. meta[7]
            .. ',"seq":' .. seq .. ',"shopper":"' .. ARGV[5] .. '","time_ms":' .. now_ms .. '}'
        redis.call('XADD', KEYS[5], '*', 'seq', seq, 'entry', entry)
    end
    -- The counter may run a little ahead of an empty line; what was let in is at most the line.
    return {status, number, position, string.format('%.6f', math.min(served, joined)), joined,
        string.format('%.6f', rate), string.format('%.6f', measured), now_ms, created, seq, entry, ''}
end

if now_ms >= ends_at_ms then
    return said('ENDED', 0, 0, 0, 0, 0, 0)
end
if now_ms < opens_at_ms then
    return said('NOT_OPEN', 0, 0, 0, 0, 0, 0)
end
local served, joined, pre_queue, measured = line_advance(KEYS[4], starts_at_ms, rate, now_ms)
if remaining <= 0 and now_ms >= starts_at_ms then
    return said('SOLD_OUT', 0, 0, served, joined, measured, 0)
end
local seed = redis.call('HGET', KEYS[4], 'seed')
if now_ms < starts_at_ms then
    seed = false  -- Revealed at the start, when the pre-queue's size is fixed.
end

local function standing(number, created)
    if now_ms < starts_at_ms then
        return said('PRE_QUEUE', number, number, served, joined, measured, created)
    end
    local position = line_position(seed, pre_queue, number)
    if position <= served then
        if line_turn_passed(position, served, joined, rate, tonumber(ARGV[3])) then
            return said('TURN_PASSED', number, position, served, joined, measured, created)
        end
        return said('ADMITTED', number, position, served, joined, measured, created)
    end
    return said('WAITING', number, position, served, joined, measured, created)
end

local held = tonumber(redis.call('HGET', KEYS[3], ARGV[1]))
if held then
    local answer = standing(held, 0)
    if answer[1] ~= 'TURN_PASSED' or ARGV[2] ~= 'join' then
        return answer
    end
elseif ARGV[2] ~= 'join' then
    return said('NOT_IN_LINE', 0, 0, served, joined, measured, 0)
end
local number = redis.call('HINCRBY', KEYS[4], 'joined', 1)
redis.call('HSET', KEYS[3], ARGV[1], number)
joined = number
return standing(number, 1)
