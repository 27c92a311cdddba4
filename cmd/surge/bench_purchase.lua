-- surge bench purchase --driver wrk: each wrk thread sends its share of the prepared requests
-- (one line each: "<access token> <json body>", in the file named by the first argument) once,
-- counts the answers by status, and stops when all its own are answered, saying so on stdout:
-- wrk itself runs for its --duration, so surge interrupts it (SIGINT) once every thread is
-- done. done() prints one JSON line for surge to read.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[2])
  reqs, counts, nextReq, claimed, answered = {}, {}, 1, 0, 0
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then
      local token, body = line:match("^(%S+) (.*)$")
      reqs[#reqs + 1] = wrk.format("POST", nil,
        { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }, body)
    end
    i = i + 1
  end
end

-- wrk asks delay() before each request() of a connection: a connection gets a go only while
-- requests are left to claim, and otherwise waits far longer than any run, so that exactly
-- the prepared requests are sent.
function delay()
  if claimed < #reqs then
    claimed = claimed + 1
    return 0
  end
  return 600000
end

-- wrk calls request() once in the first thread before the run, to check the request it makes
-- (script_verify_request); that call must not use up a shopper's attempt.
local verified = false

function request()
  if id == 0 and not verified then
    verified = true
    return reqs[1]
  end
  local r = reqs[nextReq]
  nextReq = nextReq + 1
  return r
end

function response(status, headers, body)
  local k = tostring(status)
  counts[k] = (counts[k] or 0) + 1
  answered = answered + 1
  if answered == #reqs then
    io.write("thread done\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local parts = {}
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do
      total[k] = (total[k] or 0) + v
    end
  end
  for k, v in pairs(total) do
    parts[#parts + 1] = string.format('"%s":%d', k, v)
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"socket_errors":%d,"status":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ",")))
end
