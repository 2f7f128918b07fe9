--- @include "../../redis/_time"
--- @include "../../capacity/commands/_pace"
--- @builds-keys
--[[
  Shared by every fair-queue script: the fixed keys, the job's places and the moves between them.
  docs/ARCHITECTURE.md has the states, the keys with their lifetimes and the invariants.

  KEYS[1..13], given first to every fair-queue script, in this order, all under the queue's prefix P:
    1  fq:users    ZSET  user -> jobs waiting x agingMs + when the user started waiting: who is served next
    2  fq:claims   ZSET  "<token>|<fid>" -> the claim's deadline (ms, Redis clock): the runs under way
    3  fq:retries  ZSET  fid -> when the producer's next attempt may run (Bull attempts + backoff)
    4  fq:held     ZSET  fid -> when a failure answer held back may be told
    5  fq:answers  ZSET  fid -> order: jobs answered without an image request; they never wait for the pace
    6  fq:running  HASH  user -> jobs running, counted against USER_CONCURRENCY
    7  fq:stats    HASH  seq (order of intake), joined (jobs joined to an identical one), heldBack (answers held back),
                     epoch (see epoch-14.lua)
    8  fq:pace     HASH  the image API's pace (src/capacity owns it; see _pace.lua)
    9  wait  10 active  11 priority  12 completed  13 failed: Bull's own
  ARGV[1] is always P. Keys of one job come after the fixed ones (each script's header says which); any other key
  is built from P, so with a hash-tagged prefix it lives in the declared keys' slot.

  A job's record is fq:job:<fid> (fid = "<Bull timestamp>-<Bull id>"); its fields, and every other key, are listed in
  docs/ARCHITECTURE.md, which a test keeps in step with these scripts.
]]
local rcall = redis.call
local P = ARGV[1]
local F = P .. 'fq:'
local K = {
  users = KEYS[1], claims = KEYS[2], retries = KEYS[3], held = KEYS[4], answers = KEYS[5], running = KEYS[6],
  stats = KEYS[7], pace = KEYS[8], wait = KEYS[9], active = KEYS[10], priority = KEYS[11], completed = KEYS[12],
  failed = KEYS[13],
}
-- Bull's lock of every job the fair queue has; "fair-queue" alone is the lock of the 2.0 fair queue.
local LOCK = 'fair-queue:'
local LEGACY_LOCK = 'fair-queue'

local function jobKey(fid) return F .. 'job:' .. fid end
local function lineKey(uid) return F .. 'q:' .. uid end
local function askKey(ask) return F .. 'ask:' .. ask end
local function joinedKey(fid) return F .. 'joined:' .. fid end
local function toldKey(ask) return F .. 'told:' .. ask end
local function checkpointKey(fid) return P .. 'checkpoint:' .. fid end
local function lockKey(bid) return P .. bid .. ':lock' end

-- "<token>|<fid>", a member of fq:claims; the token is "<worker>.<n>".
local function claimMember(token, fid) return token .. '|' .. fid end
local function fidOf(member) return string.sub(member, string.find(member, '|', 1, true) + 1) end
local function workerOf(member)
  local token = string.sub(member, 1, string.find(member, '|', 1, true) - 1)
  local dot = string.find(token, '.', 1, true)
  return dot and string.sub(token, 1, dot - 1) or token
end

-- Whether `token`'s claim on fid stands: its member is in fq:claims, or the job's own record names it (the member was
-- lost: an operator's DEL of fq:claims). With `renewTo`, the claim's deadline becomes that (and a lost member is
-- written back).
local function claimStands(token, fid, renewTo)
  local member = claimMember(token, fid)
  if rcall('ZSCORE', K.claims, member) then
    if renewTo then rcall('ZADD', K.claims, renewTo, member) end
    return true
  end
  local f = rcall('HMGET', jobKey(fid), 'claim', 'at')
  if f[1] ~= token or f[2] ~= 'claimed' then return false end
  if renewTo then rcall('ZADD', K.claims, renewTo, member) end
  return true
end

-- Bull's removeOnComplete / removeOnFail as moveToFinished reads them: count (-1 keep all, 0 remove) and age.
local function keepRule(value)
  if value == true then return 0, '' end
  if type(value) == 'number' then return value, '' end
  if type(value) == 'table' then return tonumber(value['count']) or -1, tostring(tonumber(value['age']) or '') end
  return -1, ''
end

-- What this call made ready, for the fleet's wake message: 'answers' (claimed whatever the pace) or 'line'.
local ready = nil
local function publishWake()
  if ready then rcall('PUBLISH', F .. 'wake', ready) end
end

-- A job joins its user's line at `order`; the user's place among users grows by one job's worth of aging.
-- A user new to the line is ranked from now: fewest waiting first, then the one waiting longest.
local function enqueue(uid, fid, order, agingMs, t, atWritten)
  rcall('ZADD', lineKey(uid), order, fid)
  if rcall('ZADD', K.users, 'NX', agingMs + t, uid) == 0 then rcall('ZINCRBY', K.users, agingMs, uid) end
  if not atWritten then rcall('HSET', jobKey(fid), 'at', 'line') end
  ready = ready or 'line'
end

-- The job leaves its user's line (it was claimed, or is answered without the API).
local function leaveLine(uid, fid, agingMs)
  local line = lineKey(uid)
  if rcall('ZREM', line, fid) == 0 then return false end
  if rcall('EXISTS', line) == 0 then rcall('ZREM', K.users, uid) else rcall('ZINCRBY', K.users, -agingMs, uid) end
  return true
end

-- Work that needs no image request: answered by whichever worker claims it first, whatever the pace.
local function toAnswers(fid, t)
  rcall('ZADD', K.answers, t, fid)
  rcall('HSET', jobKey(fid), 'at', 'answers')
  ready = 'answers'
end

-- Takes fid's running count back, as its claim recorded it (not by the ending worker's settings); `capped` is the
-- job's field when the caller has read it already. A user with jobs waiting may be claimed again: the fleet is told
-- (claims pass over a user at USER_CONCURRENCY, and an idle worker waits to be woken).
local function releaseRunning(job, uid, capped)
  if capped == nil then capped = rcall('HGET', job, 'capped') end
  if capped == '1' then
    rcall('HDEL', job, 'capped')
    if rcall('HINCRBY', K.running, uid, -1) <= 0 then rcall('HDEL', K.running, uid) end
    if rcall('EXISTS', lineKey(uid)) == 1 then ready = ready or 'line' end
  end
end

-- The fleet's epoch (fq:stats epoch; see epoch-14.lua), as Redis has it or as high as the caller knows it.
local function epochOf(known)
  return math.max(tonumber(rcall('HGET', K.stats, 'epoch') or '0'), known or 0)
end

-- A new epoch: the Redis time it begins, so that it is later than any before it, also after fq:stats was lost.
local function beginEpoch(t, known)
  local epoch = math.max(t, epochOf(known) + 1)
  rcall('HSET', K.stats, 'epoch', epoch)
  return epoch
end

-- New identical asks join fid no more (it is set aside, or gone).
local function releaseAsk(ask, fid)
  if ask and ask ~= '' and rcall('GET', askKey(ask)) == fid then rcall('DEL', askKey(ask)) end
end

-- The jobs that joined `leader` run on their own after all (its failure was its own, or it is set aside): the
-- first goes into its user's line and the rest join it.
local function releaseJoined(leader, agingMs, t)
  local ids = rcall('LRANGE', joinedKey(leader), 0, -1)
  if #ids == 0 then return end
  rcall('DEL', joinedKey(leader))
  rcall('HDEL', jobKey(leader), 'joined')
  rcall('HINCRBY', K.stats, 'joined', -#ids)
  local first
  for _, fid in ipairs(ids) do
    local job = jobKey(fid)
    local f = rcall('HMGET', job, 'uid', 'order', 'ask')
    if f[1] then
      if not first then
        first = fid
        rcall('HDEL', job, 'joins')
        enqueue(f[1], fid, tonumber(f[2]), agingMs, t)
        if f[3] and f[3] ~= '' then rcall('SET', askKey(f[3]), fid) end
      else
        rcall('HSET', job, 'joins', first, 'at', 'joined')
        rcall('RPUSH', joinedKey(first), fid)
        rcall('HINCRBY', jobKey(first), 'joined', 1)
        rcall('HINCRBY', K.stats, 'joined', 1)
      end
    end
  end
end

-- Whether a job needs no image request: a picture kept for it (or for its ask), an answer to tell, data without a
-- user, or data or a token vetting found refused. `f` holds its fields (see placeFields).
local function needsNoApi(f)
  return f.cp == '1' or f.remembered == '1' or f.refused == '1' or (f.answer and f.answer ~= '') or f.uid == ''
end

-- A job that waits again (handed back, taken back, due again): to the answers when it needs no image request, else
-- where it was in its user's line.
local function placeBack(fid, f, agingMs, t)
  if needsNoApi(f) then toAnswers(fid, t) else enqueue(f.uid, fid, tonumber(f.order), agingMs, t) end
end

local function placeFields(job)
  local f = rcall('HMGET', job, 'uid', 'order', 'cp', 'answer', 'capped', 'claim', 'ask', 'stalledOut', 'remembered', 'refused')
  if not f[1] then return nil end
  return {uid = f[1], order = f[2], cp = f[3], answer = f[4], capped = f[5], claim = f[6], ask = f[7], stalledOut = f[8],
    remembered = f[9], refused = f[10]}
end

-- A claim that will not end by its sweeper (it lapsed, its worker died, or Redis was rolled back) goes back (see
-- placeBack). One that lapsed more than maxStalls times is answered GENERATION_FAILED instead (a picture kept for it
-- is still delivered once), and the jobs that joined it run on their own: its stalls were its own. A member whose
-- job names another claim (the job was claimed again) is only dropped.
-- Returns 'requeued', 'stalledOut' or nil (nothing to take back).
local function requeue(member, t, agingMs, maxStalls)
  rcall('ZREM', K.claims, member)
  local fid = fidOf(member)
  local job = jobKey(fid)
  local f = placeFields(job)
  local token = string.sub(member, 1, #member - #fid - 1)
  if not f or (f.claim and f.claim ~= token) then return nil end
  releaseRunning(job, f.uid, f.capped)
  freeSlot(K.pace, fid)
  rcall('HDEL', job, 'claim')
  if maxStalls >= 0 and rcall('HINCRBY', job, 'stalls', 1) > maxStalls then
    if f.stalledOut == '1' then
      -- Even the delivery of its kept picture kept stalling: the picture goes, the answer stays.
      rcall('DEL', checkpointKey(fid))
      rcall('HDEL', job, 'cp')
    end
    rcall('HSET', job, 'answer', 'GENERATION_FAILED', 'stalledOut', 1)
    releaseJoined(fid, agingMs, t)
    releaseAsk(f.ask, fid)
    toAnswers(fid, t)
    return 'stalledOut'
  end
  placeBack(fid, f, agingMs, t)
  return 'requeued'
end
