--[[
  The claim (see claim-13.lua), shared with END, which claims the next job in the same round trip.
  Returns {1, fid, lane, fields, more} (lane: 'answers' or 'line', fields: the job's hash, more: 1 when other work
  may be waiting, 0 when none is: the caller waits to be woken) or {0, ms until the next slot of the pace, or -1:
  nothing to claim (wait to be woken)}.
]]

-- Whether Bull still keeps the job locked for the fair queue. Asked only of a job taken in before the fleet's current
-- epoch (see epoch-14.lua): within one epoch a live worker kept every lock. Its lock is ours, or it lapsed on a job
-- Bull has not finished and that is still in Bull's active list: then it is ours again. A lock of anyone else's, a
-- job Bull finished or removed (a plain Bull worker ran it after a roll-back), or one Bull moved back to its wait
-- list, is not ours: the fair queue forgets the job (the intake takes a waiting one in again).
local function lockedForUs(fid, bid, lockMs)
  local lock = lockKey(bid)
  local v = rcall('GET', lock)
  if v == LOCK .. fid then return true end
  if v and v ~= LEGACY_LOCK then return false end
  if not v then
    -- Unlocked, it is ours again only where the fair queue left it, in Bull's active list: a job Bull moved back to
    -- its wait list (its stalled check, after a roll-back) is the intake's to take in, and a plain worker's to run.
    local b = rcall('HMGET', P .. bid, 'timestamp', 'finishedOn')
    if not b[1] or b[2] or b[1] .. '-' .. bid ~= fid or not rcall('LPOS', K.active, bid) then return false end
  end
  rcall('SET', lock, LOCK .. fid, 'PX', lockMs)
  return true
end

-- A job Bull no longer keeps locked for the fair queue: forgotten, and the jobs that joined it run on their own.
local function forget(fid, f, agingMs, t)
  releaseJoined(fid, agingMs, t)
  releaseAsk(f.ask, fid)
  rcall('DEL', jobKey(fid), checkpointKey(fid))
end

local function fieldsOf(list)
  local f = {}
  for i = 1, #list, 2 do f[list[i]] = list[i + 1] end
  return f
end

-- `answers`: look at fq:answers first (a claim made with a run's end looks only when told there may be some).
-- `epoch`: the fleet's epoch as the claiming worker knows it.
local function claimNext(t, token, leaseMs, cap, paced, promiseMs, agingMs, lockMs, answers, epoch)
  for _ = 1, 10 do
    local lane, uid, more, slot = 'answers', nil, 1, nil
    local fid = answers and rcall('ZPOPMIN', K.answers)[1]
    if not fid then
      lane = 'line'
      if paced then
        local wait
        wait, slot = paceWait(K.pace, t)
        if wait > 0 then return {0, wait} end
      end
      if cap == 0 then
        uid = rcall('ZRANGE', K.users, 0, 0)[1]
      else
        -- Users at their cap are passed over; 100 at a time bounds the work when many are.
        local from = 0
        while not uid do
          local batch = rcall('ZRANGE', K.users, from, from + 99)
          if #batch == 0 then break end
          for _, u in ipairs(batch) do
            if tonumber(rcall('HGET', K.running, u) or '0') < cap then uid = u break end
          end
          from = from + 100
        end
      end
      if not uid then return {0, -1} end
      local line = lineKey(uid)
      fid = rcall('ZPOPMIN', line)[1]
      if rcall('EXISTS', line) == 1 then
        rcall('ZINCRBY', K.users, -agingMs, uid)
      else
        rcall('ZREM', K.users, uid)
        if rcall('ZCARD', K.users) == 0 and (not answers or rcall('EXISTS', K.answers) == 0) then more = 0 end
      end
    end
    if fid then
      local job = jobKey(fid)
      local list = rcall('HGETALL', job)
      if #list > 0 then
        local f = fieldsOf(list)
        if (tonumber(f.epoch) or 0) >= epoch or lockedForUs(fid, f.bid, lockMs) then
          rcall('HSET', job, 'at', 'claimed', 'claim', token)
          rcall('ZADD', K.claims, t + leaseMs, claimMember(token, fid))
          if lane == 'line' then
            if cap > 0 then
              rcall('HSET', job, 'capped', 1)
              rcall('HINCRBY', K.running, uid, 1)
            end
            if paced then promiseSlot(K.pace, t, fid, promiseMs, slot) end
          end
          return {1, fid, lane, list, more}
        end
        forget(fid, f, agingMs, t)
      end
    end
  end
  return {0, 0}
end
