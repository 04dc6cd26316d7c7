-- wrk script for bench/scale.sh's cold-key run: each request verifies a made-up signature
-- with a key picked at random among seed-0 … seed-<BENCH_KEYS - 1>, so with far more keys
-- than `cache.max_entries` nearly every request misses the caches: the key's row and its
-- sealed version are read from the store and its DEK is unwrapped by the HSM. The answer is
-- 200 {"valid":false} (the signature is wrong on purpose: verification still runs in full).
-- Inputs from the environment: BENCH_KEYS, BENCH_TOKEN.

local keys = tonumber(os.getenv("BENCH_KEYS") or "") or error("cold.lua: BENCH_KEYS is not set")
local token = os.getenv("BENCH_TOKEN") or error("cold.lua: BENCH_TOKEN is not set")
-- 32 zero bytes and a short message, in base64.
local body = '{"message":"aGVsbG8=","signature":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}'

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000)
end

function request()
  local name = "seed-" .. math.random(0, keys - 1)
  return wrk.format("POST", "/v1/keys/" .. name .. "/verify", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end
