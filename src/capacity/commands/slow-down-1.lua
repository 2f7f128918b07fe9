--- @include "../../redis/_time"
--[[
  The image API answered "rate limited": no slot before Retry-After (or two intervals), and the pace slows by
  1.5 (up to 16x), at most once per second however many requests hear the 429 together; ACQUIRE eases it back as
  slots go by without one.
  KEYS: 1 fq:pace (see _pace.lua)
  ARGV: intervalMs, retryAfterMs (-1: not given), idleTtlMs
  Returns the slow-down factor x 100.
]]
local interval, retryAfter, idleTtl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = now()
local pace = redis.call('HMGET', KEYS[1], 'tat', 'scale', 'slowed')
local tat, scale, slowed = tonumber(pace[1] or '0'), tonumber(pace[2] or '1'), tonumber(pace[3] or '0')
if t - slowed >= 1000 then
  scale = math.min(scale * 1.5, 16)
  slowed = t
end
local pause = retryAfter >= 0 and retryAfter or 2 * interval * scale
redis.call('HSET', KEYS[1], 'tat', tostring(math.max(tat, t + pause)), 'scale', tostring(scale), 'slowed', tostring(slowed))
redis.call('PEXPIRE', KEYS[1], idleTtl)
return math.ceil(scale * 100)
