-- line_counts.lua: a queue-mode sale's line as its operator sees it, in one call by the Redis
-- clock, writing nothing (the admin's live panel, /metrics; docs/observability.md). The rules
-- are line.lua's (put before this script): the counter is where the next join or purchase
-- would move it, at the end of the window for an ended sale.
--
-- KEYS: 1 meta  2 stock  3 line (user -> number)  4 the line's state  5 buyers  6 returned buyers
-- ARGV: 1 turn seconds  2 crowd interval ms
-- Returns false for a sale that is not loaded or admits directly, else
-- {joined, served, rate, measured, window_open, admitted, passed, bought_in_turn, bought_passed}:
--   served, rate and measured as strings (fractions); admitted = floor(min(joined, served));
--   passed: admitted places whose turn has passed; bought_in_turn / bought_passed: holders
--   (buyers and returned buyers) whose number in the line stands at an admitted place, by
--   whether that place's turn has passed.
-- Its cost grows with the holders (bounded by the stock), not with the line: a holder's
-- number is one HMGET away, and the places are counted from the counter alone.

local meta = redis.call('HMGET', KEYS[1], 'starts_at_ms', 'ends_at_ms', 'admission', 'serving_rate', 'crowd_factor')
if not meta[1] or meta[3] ~= 'queue' then
    return false
end
local now_ms = now_ms_of(redis.call('TIME'))
local starts_at_ms, ends_at_ms = tonumber(meta[1]), tonumber(meta[2])
local remaining = tonumber(redis.call('GET', KEYS[2]) or '0')
local rate = line_rate(tonumber(meta[4]) or 0, tonumber(meta[5]) or 0, remaining, tonumber(ARGV[2]))
local s = redis.call('HMGET', KEYS[4], 'joined', 'served', 'at_ms', 'pre_queue', 'seed', 'measured')
local joined = tonumber(s[1]) or 0
local measured = tonumber(s[6]) or 0

-- Nothing moves the counter outside the window: the scripts answer NOT_STARTED or ENDED first.
local at_ms = math.min(now_ms, ends_at_ms)
local served = 0
if at_ms >= starts_at_ms then
    served = line_served_at(tonumber(s[2]) or 0, joined, math.max(tonumber(s[3]) or starts_at_ms, starts_at_ms),
        rate, at_ms)
end
local window_open = 0
if now_ms >= starts_at_ms and now_ms < ends_at_ms then
    window_open = 1
end
local admitted = math.floor(math.min(joined, served))
-- Places at or below the edge had their turn pass: min(joined, served) - p >= the turn's
-- length (line_turn_passed).
local edge = math.min(joined, served) - math.max(1, rate * tonumber(ARGV[1]))
local passed = math.max(0, math.min(admitted, math.floor(edge)))

local bought_in_turn, bought_passed = 0, 0
if admitted > 0 then
    -- Before the first call after the start fixed P, it is the line as it stands (line_advance).
    local pre_queue = tonumber(s[4]) or joined
    local seed = s[5]
    if not seed or seed == '' then
        pre_queue = 0  -- Kept in order: every place is its number.
    end
    for _, holders_key in ipairs({KEYS[5], KEYS[6]}) do
        local holders = redis.call('HKEYS', holders_key)
        for first = 1, #holders, 1000 do
            local numbers = redis.call('HMGET', KEYS[3], unpack(holders, first, math.min(first + 999, #holders)))
            for _, held in ipairs(numbers) do
                local number = tonumber(held)
                local position = number
                if number and number <= pre_queue then
                    -- A shuffled place stands somewhere in 1..P. When all of 1..P is on one
                    -- side of the edge and let in, any of them is counted the same, and the
                    -- permutation (the costly part) is not needed.
                    if pre_queue <= edge or (edge < 1 and pre_queue <= admitted) then
                        position = pre_queue
                    else
                        position = line_position(seed, pre_queue, number)
                    end
                end
                if position and position <= admitted then
                    if position <= edge then
                        bought_passed = bought_passed + 1
                    else
                        bought_in_turn = bought_in_turn + 1
                    end
                end
            end
        end
    end
end

return {joined, string.format('%.6f', served), string.format('%.6f', rate), string.format('%.6f', measured), window_open,
    admitted, passed, bought_in_turn, bought_passed}
