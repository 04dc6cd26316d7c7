-- Whether a source address, or one credential from it, is blocked after failed
-- authentications (sigvault::ratelimit::redis). Reads only.
--
-- KEYS     the windows to look at: the source's, then the (source, credential) pair's; each
--          a hash: s = the window's start (Unix ms), c = failures counted in it.
-- ARGV     now_ms, window_ms, max: integers.
-- Returns  when the last live block among them ends (Unix ms), or 0 when none is live.
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max = tonumber(ARGV[3])

local ends = 0
for _, key in ipairs(KEYS) do
  local w = redis.call('HMGET', key, 's', 'c')
  local start = tonumber(w[1])
  local count = tonumber(w[2])
  if start ~= nil and count ~= nil and count >= max then
    local stop = start + window
    if now < stop and stop > ends then
      ends = stop
    end
  end
end
return ends
