--- @include "../../redis/_time"
--- @builds-keys
--[[
  Keeps a delivered picture for REMEMBER_PICTURES_S, so that the same ask (user, page and prompt: a reload
  mid-story) gets it again without buying it, within REMEMBER_PICTURES_MB of Redis memory: the oldest pictures go
  first, and those whose time is over are forgotten on the way.
  KEYS: 1 picture:<ask>, 2 pictures (ZSET ask -> when kept), 3 pictures:bytes (HASH ask -> bytes, total -> their sum)
  ARGV: P, ask, ttlMs, maxBytes, value (the picture, as a checkpoint is kept)
  Returns the bytes the pictures kept take now.
]]
local P, ask, ttlMs, maxBytes, value = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local index, sizes = KEYS[2], KEYS[3]
local t = now()
local function forget(a)
  local size = tonumber(redis.call('HGET', sizes, a) or '0')
  redis.call('DEL', P .. 'picture:' .. a)
  redis.call('ZREM', index, a)
  redis.call('HDEL', sizes, a)
  return redis.call('HINCRBY', sizes, 'total', -size)
end
for _, a in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', t - ttlMs, 'LIMIT', 0, 100)) do forget(a) end
if redis.call('HEXISTS', sizes, ask) == 1 then forget(ask) end
redis.call('SET', KEYS[1], value, 'PX', ttlMs)
redis.call('ZADD', index, t, ask)
redis.call('HSET', sizes, ask, #value)
local total = redis.call('HINCRBY', sizes, 'total', #value)
while total > maxBytes do
  local oldest = redis.call('ZRANGE', index, 0, 0)[1]
  if not oldest then break end
  total = forget(oldest)
end
return total
