--[[
  The pace's part of a claim (see acquire-1.lua): the fair queue claims a job that will ask the image API only
  once the next slot is free, and promises that slot to it for a moment (`promised`, `promisedTo`, `promisedAt`)
  so that other workers do not claim for the same slot; the job then reserves it with ACQUIRE, which ends the
  promise. A run that ends without asking the API gives the promise back at once.
  The pace hash: tat (the next free slot, ms), scale (slow-down factor), slowed (ms), promised (until when the
  promise holds, ms), promisedTo (fid), promisedAt (the slot promised, ms).
]]

-- A slot that came free this long before the claim is still given at its own time: else the claim's round trip
-- and timer would push every slot later by a few ms (at 50 requests a second, a few ms of every 21).
local SLOT_TOLERANCE_MS = 10

-- Milliseconds until the next slot may be promised (0 when it is free now), and the slot a promise made now gives.
local function paceWait(pace, t)
  local f = redis.call('HMGET', pace, 'tat', 'promised')
  local tat = tonumber(f[1] or '0')
  local free = math.max(tat, tonumber(f[2] or '0'))
  if free > t then return math.ceil(free - t), nil end
  return 0, math.max(tat, t - SLOT_TOLERANCE_MS)
end

-- Promises `slot` (as paceWait gave it) to `fid` for `ms`.
local function promiseSlot(pace, t, fid, ms, slot)
  redis.call('HSET', pace, 'promised', t + ms, 'promisedTo', fid, 'promisedAt', slot)
end

local function freeSlot(pace, fid)
  if redis.call('HGET', pace, 'promisedTo') == fid then redis.call('HDEL', pace, 'promised', 'promisedTo', 'promisedAt') end
end

-- The slot promised to `fid` ('' : none), as ACQUIRE reserves it: the promise ends. `promisedTo`, `promised` and
-- `promisedAt` are the pace's fields as ACQUIRE read them. nil when `fid` holds no promise still good at `t`.
local function takePromise(pace, t, fid, promisedTo, promised, promisedAt)
  if fid == '' or promisedTo ~= fid then return nil end
  redis.call('HDEL', pace, 'promised', 'promisedTo', 'promisedAt')
  if tonumber(promised or '0') < t then return nil end
  return tonumber(promisedAt)
end
