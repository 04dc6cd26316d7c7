-- wrk script for bench/kms.sh: every request is the same KMS GenerateMac call, pre-signed
-- once with botocore's SigV4 signer, over keep-alive connections. Its one input comes from
-- the environment (never argv):
--   BENCH_REQUEST_FILE  the signed request: "Name: value" header lines, an empty line, then
--                       the JSON body (written by kms.sh; the signature is in a file, not in
--                       `ps`)
-- kms.sh sends the very same request with curl before the run (200 with a Mac) and counts
-- wrk's "Non-2xx or 3xx responses" afterwards.

local path = os.getenv("BENCH_REQUEST_FILE")
if path == nil or path == "" then
  error("kms.lua: environment variable BENCH_REQUEST_FILE is not set")
end
local file, err = io.open(path, "rb")
if file == nil then
  error("kms.lua: cannot open the request file: " .. tostring(err))
end
local text = file:read("*a")
file:close()

local head, body = text:match("^(.-)\n\n(.*)$")
if head == nil then
  error("kms.lua: " .. path .. " has no empty line between headers and body")
end
wrk.method = "POST"
wrk.path = "/"
wrk.body = body
for line in head:gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name == nil then
    error("kms.lua: a header line without a colon")
  end
  wrk.headers[name] = value
end
