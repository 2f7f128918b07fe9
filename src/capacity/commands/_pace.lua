--[[
  The pace's part of a claim (see acquire-1.lua): the fair queue claims a job that will ask the image API only
  once the next slot is free, and promises that slot to it for a moment (`promised`, `promisedTo`) so that other
  workers do not claim for the same slot; the job then reserves it with ACQUIRE. A run that ends without asking
  the API gives the promise back at once.
  The pace hash: tat (the next free slot, ms), scale (slow-down factor), slowed (ms), promised (ms), promisedTo (fid).
]]

-- Milliseconds until the next slot may be promised; 0 when it is free now.
local function paceWait(pace, t)
  local f = redis.call('HMGET', pace, 'tat', 'promised')
  local free = math.max(tonumber(f[1] or '0'), tonumber(f[2] or '0'))
  if free > t then return math.ceil(free - t) end
  return 0
end

local function promiseSlot(pace, t, fid, ms)
  redis.call('HSET', pace, 'promised', t + ms, 'promisedTo', fid)
end

local function freeSlot(pace, fid)
  if redis.call('HGET', pace, 'promisedTo') == fid then redis.call('HDEL', pace, 'promised', 'promisedTo') end
end
