--- @include "_lib"
--- @include "_claim"
--[[
  Ends a run of a job, fenced: only the holder of the lease "<token>|<fid>" may. A stale holder (its lease
  lapsed and was reaped, perhaps claimed again) changes nothing.

  KEYS: the 13 fixed keys, 14 fq:job:<fid>, 15 checkpoint:<fid>, 16 fq:with:<fid> (jobs that joined this one)
  ARGV: P, fid, token, how, value, delayMs, nowMs, agingMs, toldWindowMs, clearHold (1/0),
        claim (1/0), then CLAIM's leaseMs, userCap, paced, holdMs: claim the next job in the same round trip
    how = completed | failed: the job has ended. value: Bull's return value (JSON) or the failure's code.
          It and every job that joined it are finished in Bull (moved to completed/failed, or removed as the
          producer's removeOnComplete/removeOnFail say; the global event is published). A failure is
          counted for its page (fq:told:<page>, kept toldWindowMs), so a repeat of it is told later.
    how = retry: the producer's next attempt after delayMs (fq:delayed; PROMOTE brings it back).
    how = back:  back into its user's line, where it was (shutdown handed it back).
    clearHold: the run never asked the image API: the pace slot it held for a moment is free again.
    nowMs (the worker's clock) stamps Bull's finishedOn, as Bull's own scripts do.
  Returns {1, n, n bull ids of the jobs that joined it and were finished with it, then CLAIM's reply when asked}
  when the lease was this caller's, else {0}.
]]
local fid, token, how, value = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local delayMs, nowMs, agingMs, toldWindowMs = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local job, checkpoint, followers = KEYS[14], KEYS[15], KEYS[16]
local function claimed(reply)
  if ARGV[11] ~= '1' then return reply end
  local next = claimNext(now(), tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[14] == '1', tonumber(ARGV[15]), agingMs)
  for _, v in ipairs(next) do table.insert(reply, v) end
  return reply
end

if rcall('ZREM', K.active, token .. '|' .. fid) == 0 then return {0, 0} end
local f = rcall('HMGET', job, 'uid', 'bid', 'order', 'same', 'page', 'kc', 'ka', 'fc', 'fa', 'made', 'joined')
local uid = f[1]
release(job, uid)
if ARGV[10] == '1' then freeSlot(fid) end

if how == 'retry' then
  rcall('HINCRBY', job, 'made', 1)
  rcall('HINCRBY', P .. f[2], 'attemptsMade', 1)
  rcall('ZADD', K.delayed, now() + delayMs, fid)
  return claimed({1, 0})
end
if how == 'back' then
  enqueue(uid, fid, tonumber(f[3]), agingMs, now())
  rcall('PUBLISH', F .. 'wake', '1')
  return claimed({1, 0})
end

-- Bull's moveToFinished for one job of ours: what producers, Bull's events and bull-board read.
local target, field, keepCount, keepAge = K.completed, 'returnvalue', tonumber(f[6]), tonumber(f[7])
if how == 'failed' then target, field, keepCount, keepAge = K.failed, 'failedReason', tonumber(f[8]), tonumber(f[9]) end
local function finishInBull(bid, made)
  local bkey = P .. bid
  rcall('LREM', K.bactive, -1, bid)
  if keepCount == 0 then
    rcall('DEL', bkey, bkey .. ':lock', bkey .. ':logs')
  else
    rcall('DEL', bkey .. ':lock')
    if rcall('EXISTS', bkey) == 1 then
      rcall('ZADD', target, nowMs, bid)
      if how == 'failed' then
        rcall('HSET', bkey, field, value, 'finishedOn', nowMs, 'attemptsMade', made + 1)
      else
        rcall('HSET', bkey, field, value, 'finishedOn', nowMs)
      end
      if keepAge then
        local old = rcall('ZRANGEBYSCORE', target, '-inf', nowMs - keepAge * 1000)
        for _, id in ipairs(old) do rcall('DEL', P .. id, P .. id .. ':logs') end
        rcall('ZREMRANGEBYSCORE', target, '-inf', nowMs - keepAge * 1000)
      end
      if keepCount and keepCount > 0 then
        local old = rcall('ZREVRANGE', target, keepCount, -1)
        for _, id in ipairs(old) do rcall('DEL', P .. id, P .. id .. ':logs') end
        rcall('ZREMRANGEBYRANK', target, 0, -(keepCount + 1))
      end
    end
  end
  rcall('PUBLISH', target, cjson.encode({jobId = bid, val = value}))
end

finishInBull(f[2], tonumber(f[10]) or 0)
local joinedIds = {}
if f[11] then joinedIds = rcall('LRANGE', followers, 0, -1) end
local reply = {1, 0}
for _, other in ipairs(joinedIds) do
  local g = rcall('HMGET', jobKey(other), 'bid', 'kc', 'ka', 'fc', 'fa')
  if g[1] then
    if how == 'failed' then keepCount, keepAge = tonumber(g[4]), tonumber(g[5]) else keepCount, keepAge = tonumber(g[2]), tonumber(g[3]) end
    finishInBull(g[1], 0)
    rcall('DEL', jobKey(other))
    table.insert(reply, g[1])
    reply[2] = reply[2] + 1
  end
end
if #joinedIds > 0 then rcall('HINCRBY', K.stats, 'joined', -#joinedIds) end
if f[4] ~= '' then rcall('DEL', job, checkpoint, followers, F .. 'same:' .. f[4]) else rcall('DEL', job, checkpoint, followers) end
if how == 'failed' and f[5] ~= '' then
  local told = F .. 'told:' .. f[5]
  rcall('INCR', told)
  rcall('PEXPIRE', told, toldWindowMs)
end
return claimed(reply)
