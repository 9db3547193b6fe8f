-- (c) Registration: POST /auth/register, a new email on every request (run id, wrk
-- process, thread and counter), so each one creates an account: policy check, one Argon2id
-- hash, user + token + audit + outbox rows in one transaction.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
   local password = os.getenv("BENCH_PASSWORD")
   local prefix = string.format("r%s-%s-%d-", os.getenv("BENCH_RUN_ID"),
                                os.getenv("BENCH_SHARD") or "0", id or 1)
   local headers = { ["Content-Type"] = "application/json" }
   local n = 0
   request = function()
      n = n + 1
      local body = string.format('{"email":"%s%d@bench.example","password":"%s"}',
                                 prefix, n, password)
      return wrk.format("POST", "/auth/register", headers, body)
   end
end
