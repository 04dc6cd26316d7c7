-- One API key's token bucket, taken from atomically (sigvault::ratelimit::redis).
--
-- KEYS[1]  the bucket, a hash: t = tokens scaled by the period (one token = period_ms units),
--          a = when they were counted (Unix ms, the nodes' clock), l and p = the limit and
--          period they were counted under.
-- ARGV     limit, period_ms, now_ms: integers; limit * period_ms < 2^53 (the caller checks).
-- Returns  {1, whole tokens left} when a token was taken, {0, retry_after_ms} when not.
--
-- The arithmetic is the in-memory RateLimiter's. Lua numbers are doubles, exact for integers
-- below 2^53: tokens never exceed limit * period, the elapsed time is clamped to one period
-- (a longer wait refills no more than a full bucket), so no sum or product passes 2 * limit *
-- period; divisions go through `idiv`, exact for such integers.
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local now = tonumber(ARGV[3])

local function idiv(a, b)
  return (a - a % b) / b
end

local capacity = limit * period
local state = redis.call('HMGET', KEYS[1], 't', 'a', 'l', 'p')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil or tonumber(state[3]) ~= limit or tonumber(state[4]) ~= period then
  -- A new bucket, or the key's limit changed: a full bucket of the new size.
  tokens = capacity
  at = now
end

local elapsed = now - at
if elapsed < 0 then
  elapsed = 0
elseif elapsed > period then
  elapsed = period
end
tokens = tokens + elapsed * limit
if tokens > capacity then
  tokens = capacity
end
if now > at then
  at = now
end

local result
if tokens >= period then
  tokens = tokens - period
  result = {1, idiv(tokens, period)}
else
  local wait = idiv(period - tokens + limit - 1, limit)
  if wait < 1 then
    wait = 1
  end
  result = {0, wait}
end

redis.call('HSET', KEYS[1], 't', tokens, 'a', at, 'l', limit, 'p', period)
-- An idle bucket is full again after one period: then it may as well not exist.
redis.call('PEXPIRE', KEYS[1], period + 1000)
return result
