-- wrk script for bench/apikey.sh:
--   POST /v1/apikeys/verify  with the JSON bodies in the file BENCH_BODY_FILE, one per line
-- One line (MODE=cached): every request sends it, set once as wrk.body (no per-request Lua
-- work, as verify.lua and sigv4.lua). Several lines (MODE=miss): a request() callback cycles
-- through them, so each request presents another key (its per-request Lua cost is small
-- next to the server's keyed hash and store lookup it measures).
-- Inputs come from the environment (never argv):
--   BENCH_BODY_FILE  path of the bodies (a file in the bench's temp dir)
--   BENCH_TOKEN      bearer token

local function need(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("apikey.lua: environment variable " .. name .. " is not set")
  end
  return value
end

local path = need("BENCH_BODY_FILE")
local token = need("BENCH_TOKEN")

local bodies = {}
for line in io.lines(path) do
  if line ~= "" then
    bodies[#bodies + 1] = line
  end
end
if #bodies == 0 then
  error("apikey.lua: " .. path .. " holds no body")
end

wrk.method = "POST"
wrk.path = "/v1/apikeys/verify"
wrk.body = bodies[1]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

if #bodies > 1 then
  local next_body = 0
  request = function()
    next_body = next_body % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[next_body])
  end
end
