-- (a) Session-authenticated GET /auth/me: each request carries one of the session tokens
-- (round-robin), as many distinct sessions as connections. BENCH_SESSION_PATH picks
-- another session route (the harness's diagnostic phase uses /auth/csrf: the session
-- check alone, no database read).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
   local cookie = os.getenv("BENCH_COOKIE") or "session"
   local path = os.getenv("BENCH_SESSION_PATH") or "/auth/me"
   local reqs = {}
   for _, token in ipairs(bench_lines(os.getenv("BENCH_TOKENS_FILE"))) do
      reqs[#reqs + 1] = wrk.format("GET", path, { ["Cookie"] = cookie .. "=" .. token })
   end
   request = bench_rotate(reqs)
end
