--- @include "_lib"
--- @include "_promote"
--[[
  Takes back the claims nobody will end (see requeue in _lib.lua), and promotes what is due.
  - A claim whose deadline passed: its worker froze, lost Redis, or died without anyone noticing.
  - Every claim of a worker that is gone: each worker stays subscribed to its own channel fq:worker:<id> while it
    lives, and a process that dies (kill -9, a crash, the OOM killer) loses its subscription at once. A worker
    without a subscriber is a suspect; still one graceMs later (a live worker's subscription comes back within
    moments when its connection drops), its claims are taken back without waiting for their deadlines. A worker
    that is frozen or slow keeps its subscription: its claims lapse by their deadlines only.

  KEYS: the 13 fixed keys, 14 fq:suspects (HASH worker -> when it was first seen without a subscriber)
  ARGV: P, agingMs, maxStalls, presence ('channel' | 'shard': how a worker's subscription is counted; 'off': not
        at all), graceMs, worker (the caller, alive by definition)
  Returns {requeued, stalledOut, promoted, suspects}: suspects are workers still to be looked at again in graceMs.
]]
local agingMs, maxStalls, presence, graceMs, self = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6]
local suspectsKey = KEYS[14]
local t = now()
local promoted = promote(t, agingMs)
local counts = {requeued = 0, stalledOut = 0}
local function takeBack(member)
  local what = requeue(member, t, agingMs, maxStalls)
  if what then counts[what] = counts[what] + 1 end
end

for _, member in ipairs(rcall('ZRANGEBYSCORE', K.claims, '-inf', t, 'LIMIT', 0, 100)) do takeBack(member) end

local suspects = 0
if presence ~= 'off' then
  local byWorker = {}
  for _, member in ipairs(rcall('ZRANGE', K.claims, 0, -1)) do
    local w = workerOf(member)
    if w ~= self then
      byWorker[w] = byWorker[w] or {}
      table.insert(byWorker[w], member)
    end
  end
  for w, members in pairs(byWorker) do
    local reply = rcall('PUBSUB', presence == 'shard' and 'SHARDNUMSUB' or 'NUMSUB', F .. 'worker:' .. w)
    if tonumber(reply[2]) > 0 then
      rcall('HDEL', suspectsKey, w)
    else
      local since = tonumber(rcall('HGET', suspectsKey, w) or '-1')
      if since < 0 then
        rcall('HSET', suspectsKey, w, t)
        suspects = suspects + 1
      elseif t - since >= graceMs then
        for _, member in ipairs(members) do takeBack(member) end
        rcall('HDEL', suspectsKey, w)
      else
        suspects = suspects + 1
      end
    end
  end
  -- Forget suspects that have no claim any more (the caller's own entry is the others' to judge).
  for _, w in ipairs(rcall('HKEYS', suspectsKey)) do
    if not byWorker[w] and w ~= self then rcall('HDEL', suspectsKey, w) end
  end
end
publishWake()
return {counts.requeued, counts.stalledOut, promoted, suspects}
