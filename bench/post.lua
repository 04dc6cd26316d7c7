-- wrk script for bench/transit.sh: every request is the same POST over keep-alive
-- connections. Inputs come from the environment (never argv, so the token does not show up
-- in `ps`):
--   BENCH_PATH   the route, e.g. /v1/transit/hmac/bench
--   BENCH_BODY   the JSON body
--   BENCH_AUTH   vault: the token goes as X-Vault-Token (Vault clients' header); anything
--                else: as a bearer Authorization header
--   BENCH_TOKEN  the caller token
-- The script checks the very same body with curl before the run, and wrk's "Non-2xx or 3xx
-- responses" afterwards. No response() callback, as in verify.lua.

local function need(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("post.lua: environment variable " .. name .. " is not set")
  end
  return value
end

local token = need("BENCH_TOKEN")
wrk.method = "POST"
wrk.path = need("BENCH_PATH")
wrk.body = need("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_AUTH") == "vault" then
  wrk.headers["X-Vault-Token"] = token
else
  wrk.headers["Authorization"] = "Bearer " .. token
end
