-- wrk script for bench/sigv4.sh: every request is the same
--   POST /v1/sigv4/verify  <the JSON body in the file BENCH_BODY_FILE>
-- over keep-alive connections. The body is one request pre-signed with botocore
-- (examples/sigv4_sign.py), sent exactly as the file holds it (no trailing newline: sigv4.sh
-- writes it so), which is byte for byte what sigv4.sh checks with curl before and after the
-- load (200, "valid":true). Inputs come from the environment (never argv, so the token does
-- not show up in `ps`):
--   BENCH_BODY_FILE  path of the JSON body (a file in the bench's temp dir)
--   BENCH_TOKEN      bearer token
-- The file is read once per Lua state, when wrk loads the script (before any request).
-- No response() callback, on purpose: see verify.lua (Lua work only in the measured run
-- would bias the ratio against the ping runs).

local function need(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("sigv4.lua: environment variable " .. name .. " is not set")
  end
  return value
end

local path = need("BENCH_BODY_FILE")
local token = need("BENCH_TOKEN")

local file, err = io.open(path, "rb")
if file == nil then
  error("sigv4.lua: cannot open the body file: " .. tostring(err))
end
local body = file:read("*a")
file:close()
if body == nil or body == "" then
  error("sigv4.lua: " .. path .. " is empty")
end

wrk.method = "POST"
wrk.path = "/v1/sigv4/verify"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
