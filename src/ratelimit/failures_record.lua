-- Counts one failed authentication (sigvault::ratelimit::redis), as the in-memory
-- FailureLimiter does: in the (source, credential) pair's fixed window, and — when it is the
-- pair's first failure in that window — once more in the source's window, which so counts
-- distinct failing credentials.
--
-- KEYS[1]  the source's window, KEYS[2] the pair's; each a hash: s = start (Unix ms),
--          c = failures counted in it.
-- ARGV     now_ms, window_ms: integers.
-- Returns  the pair's count in its window.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])

local function count(key)
  local w = redis.call('HMGET', key, 's', 'c')
  local start = tonumber(w[1])
  local n = tonumber(w[2])
  if start == nil or n == nil or now >= start + window then
    start = now
    n = 0
  end
  n = n + 1
  redis.call('HSET', key, 's', start, 'c', n)
  -- Gone a second after its window ends (by this node's clock).
  local left = start + window - now
  if left < 1 then
    left = 1
  end
  redis.call('PEXPIRE', key, left + 1000)
  return n
end

local pair = count(KEYS[2])
if pair == 1 then
  count(KEYS[1])
end
return pair
