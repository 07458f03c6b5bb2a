-- The benchmark's wrk script: one request per line of a file, each line used once.
--
-- wrk -t <n> -s requests.lua <url> -- <method> <path> <lines file or "-"> <count statuses: 1|0> <n>
--
-- A line is "<token>\t<body>", or "<token>\t<body>\t<Name>: <value>": the Authorization
-- token and the JSON body of one request (either may be empty), and one more header (the
-- waiting room's place reads carry their pass in Queue-Pass). Thread i of n takes lines i,
-- i+n, i+2n ... and stops once every line it sent has been answered, so a run is bounded by
-- the file as well as by wrk's --duration, and no request is left in flight uncounted: a
-- connection that finds no line left waits (delay()) while the others' answers come in.
-- Without a file every request is the same (the control). done() prints one JSON line,
-- prefixed "BENCH_JSON ", with the latency percentiles (microseconds), the errors, the lines
-- sent and answered, and, when counting, the answers per HTTP status.

local threads = {}
local next_thread_id = 0

function setup(thread)
    thread:set("thread_id", next_thread_id)
    next_thread_id = next_thread_id + 1
    table.insert(threads, thread)
end

local requests = {}
local cursor = 0
local reserved = 0
total = 0
local last_request = nil
statuses = {}
exhausted = 0
sent = 0
answered = 0

local function read_requests(method, path, file_name, thread_total)
    local index = 0
    for line in io.lines(file_name) do
        if index % thread_total == thread_id then
            local token, body, extra = line:match("^([^\t]*)\t([^\t]*)\t?(.*)$")
            local headers = { ["Content-Type"] = "application/json" }
            if token and token ~= "" then
                headers["Authorization"] = "Token " .. token
            end
            local name, value = (extra or ""):match("^([^:]+):%s*(.*)$")
            if name then
                headers[name] = value
            end
            total = total + 1
            requests[total] = wrk.format(method, path, headers, body or "")
        end
        index = index + 1
    end
end

function init(args)
    local method, path, file_name, count_statuses = args[1], args[2], args[3], args[4]
    if file_name ~= "-" then
        read_requests(method, path, file_name, tonumber(args[5]))
    else
        total = -1
        last_request = wrk.format(method, path, { ["Content-Type"] = "application/json" }, "")
    end
    if count_statuses ~= "1" then
        -- Counting per status costs the control a little; the lines still need counting.
        response = function()
            answered = answered + 1
            finish_when_answered()
        end
        if total < 0 then
            response = nil
            delay = nil
        end
    end
    if total < 0 then
        delay = nil
    end
end

-- Before each request wrk asks how long to wait: a line is reserved here for the request
-- that follows (other connections may write in between, so request() can never find the
-- file spent), and a connection that finds no line left waits for the rest of the run.
function delay()
    if total < 0 or reserved < total then
        reserved = reserved + 1
        return 0
    end
    return 3600000
end

function request()
    if total < 0 then
        return last_request
    end
    if cursor >= reserved then
        -- Not preceded by delay(): wrk's one call per thread at start-up to check that the
        -- request parses (script_verify_request). Nothing is sent; no line is used.
        return requests[1]
    end
    cursor = cursor + 1
    sent = cursor
    return requests[cursor]
end

local function finish_when_answered()
    if total >= 0 and exhausted == 0 and answered >= total then
        -- Every line was sent and answered: stop this thread and tell the runner, which
        -- interrupts wrk (SIGINT) once every thread is done, so the run's duration ends here.
        exhausted = 1
        io.write("BENCH_EXHAUSTED\n")
        io.flush()
        wrk.thread:stop()
    end
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    answered = answered + 1
    finish_when_answered()
end

local function json_number_map(map)
    local parts = {}
    for key, value in pairs(map) do
        table.insert(parts, string.format('"%s": %d', tostring(key), value))
    end
    return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, _)
    local merged = {}
    local threads_exhausted = 0
    local lines_sent, lines_answered, lines_total = 0, 0, 0
    for _, thread in ipairs(threads) do
        lines_sent = lines_sent + (thread:get("sent") or 0)
        lines_total = lines_total + math.max(0, thread:get("total") or 0)
        lines_answered = lines_answered + (thread:get("answered") or 0)
        for status, count in pairs(thread:get("statuses") or {}) do
            merged[status] = (merged[status] or 0) + count
        end
        threads_exhausted = threads_exhausted + (thread:get("exhausted") or 0)
    end
    local percentiles = {}
    for _, p in ipairs({ 50, 90, 95, 99, 99.9 }) do
        table.insert(percentiles, string.format('"%s": %d', tostring(p), latency:percentile(p)))
    end
    io.write(string.format(
        'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
            .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
            .. '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, "percentiles": {%s}}, '
            .. '"statuses": %s, "threads_exhausted": %d, "lines_sent": %d, "lines_answered": %d, '
            .. '"lines_total": %d}\n',
        summary.requests, summary.duration, summary.bytes,
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
        summary.errors.timeout,
        latency.min, latency.max, latency.mean, latency.stdev, table.concat(percentiles, ", "),
        json_number_map(merged), threads_exhausted, lines_sent, lines_answered, lines_total
    ))
end
