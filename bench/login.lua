-- (b), (f) Password login: POST /auth/login with the benchmark accounts in turn. Every
-- success is one Argon2id verification, one session row and one audit record.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
   local password = os.getenv("BENCH_PASSWORD")
   local headers = { ["Content-Type"] = "application/json" }
   local reqs = {}
   for _, email in ipairs(bench_lines(os.getenv("BENCH_USERS_FILE"))) do
      local body = string.format('{"email":"%s","password":"%s"}', email, password)
      reqs[#reqs + 1] = wrk.format("POST", "/auth/login", headers, body)
   end
   request = bench_rotate(reqs)
end
