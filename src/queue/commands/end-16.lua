--- @include "_lib"
--- @include "_claim"
--[[
  Ends a run of a job, for the run with its claim only: a run whose claim is gone (it lapsed and was taken back,
  perhaps claimed again) changes nothing.

  KEYS: the 13 fixed keys, 14 fq:job:<fid>, 15 checkpoint:<fid>, 16 fq:joined:<fid> (jobs that joined this one)
  ARGV: P, fid, token, how, value, delayMs, nowMs, agingMs, toldWindowMs, askedApi (1/0), shared (1/0),
        nextToken ('': none), then CLAIM's leaseMs, userCap, paced, promiseMs, lockMs, answers, epoch for the next job
    how = completed | failed: the job has ended. value: Bull's return value (JSON) or the failure's code. It is
          finished in Bull (moved to completed/failed, or removed as the producer's removeOnComplete/removeOnFail
          say; the global event is published). The jobs that joined it end with it, unless it failed for a reason
          of its own (`shared` 0: its token or its data): then they run on their own. A failure is counted for its
          ask (fq:told:<ask>, kept toldWindowMs), so a repeat of it is told later (HOLD-BACK).
    how = retry: the producer's next attempt after delayMs (fq:retries; PROMOTE brings it back).
    how = back:  back where it was (shutdown handed it back before it was done). value: a failure's code when the
          run had one to tell and was stopped before it could: the job comes back as that answer.
    askedApi 0: the run never asked the image API: the pace slot promised to it is free again.
    nowMs (the worker's clock) stamps Bull's finishedOn, as Bull's own scripts do.
    nextToken: claim the next job in the same round trip, with this token.
  A run whose job the fair queue lost altogether (its keys were deleted) still ends a completed or failed job in
  Bull, when Bull keeps it locked for the fair queue and no other claim runs it: the picture went out, or the user was told.
  Returns {1, n, n Bull ids of the jobs that joined it and ended with it, then CLAIM's reply when asked}, or {-1}
  when the claim is not the caller's.
]]
local fid, token, how, value = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local delayMs, nowMs, agingMs, toldWindowMs = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local job, checkpoint, joined = KEYS[14], KEYS[15], KEYS[16]
-- Redis' clock, read once and only when needed: a job completed with no next job to claim does not ask for it.
local clock
local function t()
  clock = clock or now()
  return clock
end
local function reply(r)
  if ARGV[12] == '' then return r end
  local next = claimNext(t(), ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14]), ARGV[15] == '1', tonumber(ARGV[16]),
    agingMs, tonumber(ARGV[17]), ARGV[18] == '1', tonumber(ARGV[19]))
  for _, v in ipairs(next) do table.insert(r, v) end
  return r
end

-- Keys to delete, in one DEL at the end.
local gone = {}
local function drop(...)
  for _, key in ipairs({...}) do table.insert(gone, key) end
end

-- Bull's moveToFinished for one job of ours: what producers, Bull's events and bull-board read.
local target = how == 'failed' and K.failed or K.completed
local function finishInBull(bid, made, keepCount, keepAge)
  local bkey = P .. bid
  rcall('LREM', K.active, -1, bid)
  if keepCount == 0 then
    drop(bkey, bkey .. ':lock', bkey .. ':logs')
  else
    drop(bkey .. ':lock')
    if rcall('EXISTS', bkey) == 1 then
      rcall('ZADD', target, nowMs, bid)
      if how == 'failed' then
        rcall('HSET', bkey, 'failedReason', value, 'finishedOn', nowMs, 'attemptsMade', made + 1)
      else
        rcall('HSET', bkey, 'returnvalue', value, 'finishedOn', nowMs)
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

-- The rule a job's producer gave for keeping it once finished (removeOnComplete or removeOnFail).
local function keepOf(kc, ka, fc, fa)
  if how == 'failed' then return tonumber(fc), tonumber(fa) end
  return tonumber(kc), tonumber(ka)
end

if rcall('ZREM', K.claims, claimMember(token, fid)) == 0 then
  local own = rcall('HMGET', job, 'claim', 'at')
  if own[2] then
    if own[1] ~= token or own[2] ~= 'claimed' then return {-1} end
  else
    -- The fair queue lost the job: only a completed or failed run ends it, in Bull alone.
    if how ~= 'completed' and how ~= 'failed' then return {-1} end
    local bid = string.sub(fid, string.find(fid, '-', 1, true) + 1)
    if rcall('GET', lockKey(bid)) ~= LOCK .. fid then return {-1} end
    for _, member in ipairs(rcall('ZRANGE', K.claims, 0, -1)) do
      if fidOf(member) == fid then return {-1} end
    end
    local b = rcall('HMGET', P .. bid, 'opts', 'attemptsMade')
    local ok, opts = pcall(cjson.decode, b[1] or '{}')
    if not ok or type(opts) ~= 'table' then opts = {} end
    local kc, ka = keepRule(opts['removeOnComplete'])
    local fc, fa = keepRule(opts['removeOnFail'])
    local keepCount, keepAge = keepOf(kc, ka, fc, fa)
    finishInBull(bid, tonumber(b[2]) or 0, keepCount, keepAge)
    drop(checkpoint)
    rcall('DEL', unpack(gone))
    return reply({1, 0})
  end
end
local f = rcall('HMGET', job, 'uid', 'bid', 'order', 'ask', 'kc', 'ka', 'fc', 'fa', 'made', 'joined', 'cp', 'capped', 'answer',
  'remembered', 'refused')
local uid = f[1]
releaseRunning(job, uid, f[12])
if ARGV[10] == '0' then freeSlot(K.pace, fid) end

if how == 'retry' then
  rcall('HDEL', job, 'claim')
  rcall('HINCRBY', job, 'made', 1)
  rcall('HINCRBY', P .. f[2], 'attemptsMade', 1)
  rcall('ZADD', K.retries, t() + delayMs, fid)
  rcall('HSET', job, 'at', 'retry')
  releaseJoined(fid, agingMs, t())
  releaseAsk(f[4], fid)
  publishWake()
  return reply({1, 0})
end
if how == 'back' then
  rcall('HDEL', job, 'claim')
  local answer = f[13]
  if value ~= '' then
    answer = value
    rcall('HSET', job, 'answer', value)
  end
  placeBack(fid, {uid = uid, order = f[3], cp = f[11], answer = answer, remembered = f[14], refused = f[15]}, agingMs, t())
  publishWake()
  return reply({1, 0})
end

local keepCount, keepAge = keepOf(f[5], f[6], f[7], f[8])
finishInBull(f[2], tonumber(f[9]) or 0, keepCount, keepAge)
local r = {1, 0}
if f[10] then
  if how == 'failed' and ARGV[11] == '0' then
    releaseJoined(fid, agingMs, t())
  else
    local ids = rcall('LRANGE', joined, 0, -1)
    for _, other in ipairs(ids) do
      local g = rcall('HMGET', jobKey(other), 'bid', 'kc', 'ka', 'fc', 'fa')
      if g[1] then
        local otherCount, otherAge = keepOf(g[2], g[3], g[4], g[5])
        finishInBull(g[1], 0, otherCount, otherAge)
        drop(jobKey(other))
        table.insert(r, g[1])
        r[2] = r[2] + 1
      end
    end
    if #ids > 0 then rcall('HINCRBY', K.stats, 'joined', -#ids) end
  end
end
-- New identical asks join this job no more. Its pointer is deleted with it: only a job set aside and later due again
-- could have lost the pointer to a newer ask meanwhile, and then that ask merely does not join.
drop(job, checkpoint, joined)
if f[4] and f[4] ~= '' then drop(askKey(f[4])) end
rcall('DEL', unpack(gone))
if how == 'failed' and f[4] and f[4] ~= '' then
  local told = toldKey(f[4])
  rcall('INCR', told)
  rcall('PEXPIRE', told, toldWindowMs)
end
publishWake()
return reply(r)
