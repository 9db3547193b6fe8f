-- Shared by the wrk scripts of bench/run.py: small helpers and a done() that prints one
-- machine-readable line ("BENCH_JSON {...}") the orchestrator parses.
--
-- Data comes from the environment (set by run.py):
--   BENCH_TOKENS_FILE  session tokens, one per line (me.lua)
--   BENCH_USERS_FILE   verified accounts' emails, one per line (login.lua)
--   BENCH_PASSWORD     their password (login.lua, register.lua)
--   BENCH_COOKIE       session cookie name (default "session": COOKIE_SECURE=false)
--   BENCH_RUN_ID       makes registration emails unique across runs (register.lua)
--   BENCH_SHARD        distinguishes concurrent wrk processes (scale-out phases)

function bench_lines(path)
   local out = {}
   local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
   for line in f:lines() do
      if #line > 0 then out[#out + 1] = line end
   end
   f:close()
   assert(#out > 0, "no lines in " .. path)
   return out
end

-- Thread numbering: setup() runs in the main Lua state once per wrk thread and sets the
-- global `id` in that thread's own state.
local next_id = 1
function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
end

-- Round-robin over prebuilt requests; thread k starts at offset k so threads spread.
function bench_rotate(reqs)
   local i = ((id or 1) - 1) * 7919 % #reqs
   return function()
      i = i % #reqs + 1
      return reqs[i]
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
      '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9)))
end
