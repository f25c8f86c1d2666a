-- wrk script for scripts/bench_gateway.py --driver wrk: POST /v1/earn, a fresh receipt per
-- request, members m0..m{MEMBERS-1}, each thread its own of every THREADS in turn (so with a
-- million members no two requests name the same member). Prints one JSON line when done.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  key, members = os.getenv("KEY"), tonumber(os.getenv("MEMBERS"))
  stride = tonumber(os.getenv("THREADS") or "1")
  counter, refused = 0, 0
  prefix = tid .. "-" .. os.time()
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"member_id":"m%d","receipt_id":"W%s-%d","amount_minor":%d,"currency":"EUR"}',
    (counter * stride + tid) % members, prefix, counter, 1000 + counter % 5000)
  return wrk.format("POST", "/v1/earn",
    {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status ~= 202 then
    refused = refused + 1
    if refused <= 3 then io.stderr:write(status .. " " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local refused_total = 0
  for _, thread in ipairs(threads) do refused_total = refused_total + thread:get("refused") end
  io.write(string.format(
    '{"requests": %d, "refused": %d, "errors": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f}\n',
    summary.requests, refused_total,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
