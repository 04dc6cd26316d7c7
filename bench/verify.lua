-- wrk script for bench/verify.sh: every request is the same
--   POST /v1/keys/<BENCH_KEY>/verify  {"message": <base64>, "signature": <base64>}
-- over keep-alive connections. Inputs come from the environment (never argv, so the token
-- does not show up in `ps`):
--   BENCH_KEY        key name (default "bench")
--   BENCH_MESSAGE    base64 message (256 random bytes in verify.sh)
--   BENCH_SIGNATURE  base64 signature of that message, from POST /v1/keys/<key>/sign
--   BENCH_TOKEN      bearer token
-- verify.sh checks the very same body with curl before the run (200, "valid":true) and
-- counts wrk's "Non-2xx or 3xx responses" afterwards. No response() callback here on
-- purpose: it would make wrk parse every body in Lua, and wrk shares one core with nothing
-- else but is the load generator for both the ping and the verify runs; extra Lua work
-- only in the verify run would bias the ratio.

local function need(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("verify.lua: environment variable " .. name .. " is not set")
  end
  return value
end

local key = os.getenv("BENCH_KEY") or "bench"
local message = need("BENCH_MESSAGE")
local signature = need("BENCH_SIGNATURE")
local token = need("BENCH_TOKEN")

wrk.method = "POST"
wrk.path = "/v1/keys/" .. key .. "/verify"
-- base64 needs no JSON escaping.
wrk.body = '{"message":"' .. message .. '","signature":"' .. signature .. '"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
