-- line.lua: the waiting room's rules for the scripts that judge a queue-mode sale (join.lua,
-- purchase.lua; core/redis_store.py's lua_script puts it before them). sales/line.py holds
-- the same rules for the web processes' local answers, and its docstring explains them.
--
-- The line's state hash (sales/keys.py line_state_key): joined (the last number given),
-- served (the serving counter, a fraction), at_ms (when served was computed), pre_queue (P,
-- fixed at the start; absent before), seed (the pre-queue's shuffle, revealed at the start),
-- window_at_ms / window_served / measured (the rate actually measured, per second).

local function line_rate(configured, crowd_factor, remaining, crowd_interval_ms)
    if configured > 0 then
        return configured
    end
    if remaining <= 0 or crowd_factor <= 0 then
        return 0
    end
    return math.ceil(crowd_factor * remaining) * 1000 / crowd_interval_ms
end

-- The counter at now_ms: served (as of the instant at) moved on at rate, ahead of the last
-- number given by at most a second's serving (an empty line lets the next arrivals straight in).
local function line_served_at(served, joined, at, rate, now_ms)
    if now_ms <= at then
        return served
    end
    return math.min(joined + math.max(1, rate), served + rate * (now_ms - at) / 1000)
end

-- Move the counter to now_ms (ahead of the last number given by at most a second's serving:
-- an empty line lets the next arrivals straight in), fix the pre-queue's size at the start,
-- measure the rate every few seconds. Returns served, joined, P, measured; places up to
-- min(joined, served) have been let in.
local function line_advance(state_key, starts_at_ms, rate, now_ms)
    local s = redis.call('HMGET', state_key, 'joined', 'served', 'at_ms', 'pre_queue', 'window_at_ms',
        'window_served', 'measured')
    local joined = tonumber(s[1]) or 0
    if now_ms < starts_at_ms then
        return 0, joined, -1, 0
    end
    local served = tonumber(s[2]) or 0
    local at = math.max(tonumber(s[3]) or starts_at_ms, starts_at_ms)
    local pre_queue = tonumber(s[4])
    local measured = tonumber(s[7]) or 0
    local opening = not pre_queue
    if opening then
        pre_queue = joined
    end
    if now_ms > at then
        served = line_served_at(served, joined, at, rate, now_ms)
        local window_at = tonumber(s[5])
        if not opening and window_at and now_ms - window_at >= 2000 then
            measured = (served - (tonumber(s[6]) or 0)) * 1000 / (now_ms - window_at)
            redis.call('HSET', state_key, 'window_at_ms', now_ms, 'window_served', string.format('%.6f', served),
                'measured', string.format('%.6f', measured))
        end
        redis.call('HSET', state_key, 'served', string.format('%.6f', served), 'at_ms', now_ms)
    end
    if opening then
        -- The first window starts from the counter as this call leaves it: the step that lets
        -- up to a second's arrivals straight into an empty line is not a rate (counted from
        -- before it, the first window measured 15/s for a line served at 10/s).
        redis.call('HSET', state_key, 'pre_queue', pre_queue, 'window_at_ms', now_ms,
            'window_served', string.format('%.6f', served))
    end
    return served, joined, pre_queue, measured
end

-- Where number n stands: itself, or its place in the shuffled pre-queue (a Feistel
-- permutation of 1..P keyed by the seed, as sales/line.py's position computes it).
local function line_position(seed, pre_queue, number)
    if seed == false or seed == nil or seed == '' or pre_queue <= 1 or number > pre_queue then
        return number
    end
    -- As sales/line.py: the bits (size - 1) needs, at least 2, rounded up to even.
    local bits = 0
    while 2 ^ bits <= pre_queue - 1 do
        bits = bits + 1
    end
    bits = math.max(2, bits)
    if bits % 2 == 1 then
        bits = bits + 1
    end
    local half = bits / 2
    local span = 2 ^ half
    local value = number - 1
    while true do
        local left, right = math.floor(value / span), value % span
        for round_number = 1, 4 do
            local digest = redis.sha1hex(seed .. ':' .. round_number .. ':' .. right)
            left, right = right, bit.bxor(left, tonumber(string.sub(digest, 1, 8), 16) % span)
        end
        value = left * span + right
        if value < pre_queue then
            return value + 1
        end
    end
end

-- The line moved rate x turn_seconds places past this position (served here is the
-- counter; places let in are min(joined, served)).
local function line_turn_passed(position, served, joined, rate, turn_seconds)
    return math.min(joined, served) - position >= math.max(1, rate * turn_seconds)
end
