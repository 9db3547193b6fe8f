-- (e) The bare route: GET /healthz, no session, no storage. Built like me.lua (a Lua
-- request() per request) so both phases pay the same load-driver cost.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
   request = bench_rotate({ wrk.format("GET", "/healthz") })
end
