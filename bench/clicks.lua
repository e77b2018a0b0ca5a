-- wrk script for bench/clicks.py: replays pre-generated requests from a file.
--   wrk ... -s bench/clicks.lua URL -- REQUESTS_FILE EXPECTED_STATUS
-- Each line of REQUESTS_FILE: METHOD <tab> PATH <tab> COOKIE <tab> BODY (cookie and
-- body may be empty). Thread k of n takes lines k, k+n, k+2n, ..., so no two threads
-- send the same request; each thread cycles through its share.
local threads = {}
local thread_count = 0
local UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
  .. "Chrome/126.0 Safari/537.36"

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  expected = tonumber(args[3])
  requests = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local method, target, cookie, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]*)\t(.*)$")
      local headers = { ["User-Agent"] = UA }
      if cookie ~= "" then headers["Cookie"] = cookie end
      if body ~= "" then
        headers["Content-Type"] = "application/json"
      else
        body = nil
      end
      requests[#requests + 1] = wrk.format(method, target, headers, body)
    end
    i = i + 1
  end
  n = 0
  good = 0
  bad = 0
  last_bad = ""
end

function request()
  n = n % #requests + 1
  return requests[n]
end

function response(status, headers, body)
  if status == expected then
    good = good + 1
  else
    bad = bad + 1
    last_bad = tostring(status)
  end
end

function done(summary, latency, requests)
  local g, b, last = 0, 0, ""
  for _, t in ipairs(threads) do
    g = g + t:get("good")
    b = b + t:get("bad")
    if t:get("last_bad") ~= "" then last = t:get("last_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    "CLICKS expected=%d unexpected=%d last_unexpected=%s p99_us=%d requests=%d "
      .. "duration_us=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    g, b, last, latency:percentile(99), summary.requests, summary.duration,
    e.connect, e.read, e.write, e.timeout))
end
