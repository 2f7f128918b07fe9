--- @include "_lib"
--- @include "_takein"
--[[
  Walks Bull's active list, which has every job the fair queue has, once per STALLED_INTERVAL_MS for the
  whole fleet (the worker that sets fq:swept first; a worker that died with it is passed over):
  - keeps Bull's lock of each job the fair queue has ("fair-queue:<fid>", lockMs): a lock no live worker keeps
    lapses, and Bull's own stalled check (a plain Bull worker's, after a roll-back) returns the job to Bull's wait
    list;
  - takes in a job nobody has (read from Bull's wait list by a worker that died before taking it in), and again
    a job the fair queue no longer knows (its keys were lost: an operator's DEL, a failover);
  - puts back where it belongs a job the fair queue knows but that is in none of its places (fq:users, a user's
    line, fq:claims, ... lost).
  A job that a run may still have (locked for the fair queue but unknown to it, or recorded as claimed by a claim
  that is gone) is left alone for graceMs first (fq:unknown): a live run renews its claim within that time, or ends
  the job, or finds its claim lost and stops; only then is the job run again, so it is never run twice at once.
  In batches of `count` ids, from `start`; the worker calls it again while a batch comes back full.

  The round also marks fq:kept for lockMs (see EPOCH): the fleet keeps Bull's locks. A round that finds the mark
  gone, or the epoch lost with fq:stats, begins a new epoch. Every caller learns the epoch.

  KEYS: the 13 fixed keys, 14 fq:swept (STRING: the worker sweeping this round), 15 fq:unknown (HASH fid -> when
        the sweep first found it unknown), 16 fq:kept
  ARGV: P, worker, flagMs, lockMs, agingMs, maxIdBytes, start, count, presence ('channel' | 'shard' | 'off'), graceMs,
        known (the epoch the worker knows)
  Returns {0, epoch} when another worker sweeps this round, else {1, ids looked at, taken in, put back, epoch}.
]]
local self, flagMs, lockMs, agingMs = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local maxIdBytes, start, count, presence = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local graceMs = tonumber(ARGV[10])
local flag, unknown, kept = KEYS[14], KEYS[15], KEYS[16]
local t = now()
local function epoch() return epochOf(tonumber(ARGV[11])) end

if start == 0 then
  if not rcall('SET', flag, self, 'NX', 'PX', flagMs) then
    local sweeper = rcall('GET', flag)
    local alive = presence == 'off' or (sweeper and tonumber(rcall('PUBSUB', presence == 'shard' and 'SHARDNUMSUB' or 'NUMSUB', F .. 'worker:' .. sweeper)[2]) > 0)
    if alive and sweeper ~= self then return {0, epoch()} end
    rcall('SET', flag, self, 'PX', flagMs)
  end
  if rcall('SET', kept, 1, 'XX', 'PX', lockMs) == false or rcall('HEXISTS', K.stats, 'epoch') == 0 then
    rcall('SET', kept, 1, 'PX', lockMs)
    beginEpoch(t, tonumber(ARGV[11]))
  end
elseif rcall('GET', flag) ~= self then
  return {0, epoch()}
end

-- The runs under way, by fid: a job running when the fair queue lost its record goes on running.
local running = {}
for _, member in ipairs(rcall('ZRANGE', K.claims, 0, -1)) do
  local fid = fidOf(member)
  running[fid] = string.sub(member, 1, #member - #fid - 1)
end

-- Jobs taken in by the sweep come one by one, in the fleet's epoch as it is now.
local function takeInContext()
  return {t = t, agingMs = agingMs, lockMs = lockMs, maxIdBytes = maxIdBytes, epoch = epoch(), remember = false, notes = {}}
end

local taken, relinked = 0, 0
local deferred = {}
local anyUnknown = rcall('HLEN', unknown) > 0
-- Whether a job that a run may still have has waited out its grace (and so may run again).
local function graceOver(fid)
  deferred[fid] = true
  local since = tonumber(rcall('HGET', unknown, fid) or '-1')
  if since < 0 then
    rcall('HSET', unknown, fid, t)
    return false
  end
  if t - since < graceMs then return false end
  rcall('HDEL', unknown, fid)
  return true
end

local function relink(fid, f)
  local at, uid = f[1], f[2]
  if at == 'line' then
    if not rcall('ZSCORE', lineKey(uid), fid) then
      enqueue(uid, fid, tonumber(f[3]), agingMs, t)
    elseif not rcall('ZSCORE', K.users, uid) then
      rcall('ZADD', K.users, rcall('ZCARD', lineKey(uid)) * agingMs + t, uid)
    else
      return
    end
  elseif at == 'claimed' then
    if f[4] and running[fid] == f[4] then
      if anyUnknown then rcall('HDEL', unknown, fid) end
      return
    end
    -- Its claim's member is gone: a live run writes it back at its next renewal (see claimStands); past the grace, it
    -- is taken back as a lapsed claim is (without counting a stall: its worker may never have stalled).
    if not graceOver(fid) then return end
    local job = jobKey(fid)
    local p = placeFields(job)
    releaseRunning(job, uid, p.capped)
    freeSlot(K.pace, fid)
    rcall('HDEL', job, 'claim')
    placeBack(fid, p, agingMs, t)
  elseif at == 'retry' or at == 'held' or at == 'answers' then
    local set = at == 'retry' and K.retries or at == 'held' and K.held or K.answers
    if rcall('ZSCORE', set, fid) then return end
    rcall('ZADD', set, t, fid)
  elseif at == 'joined' then
    local leader = f[5]
    if leader and rcall('HEXISTS', jobKey(leader), 'at') == 1 then
      if rcall('LPOS', joinedKey(leader), fid) then return end
      rcall('RPUSH', joinedKey(leader), fid)
      rcall('HINCRBY', jobKey(leader), 'joined', 1)
    else
      rcall('HDEL', jobKey(fid), 'joins')
      enqueue(uid, fid, tonumber(f[3]), agingMs, t)
    end
  else
    return
  end
  relinked = relinked + 1
end

local ids = rcall('LRANGE', K.active, start, start + count - 1)
for _, bid in ipairs(ids) do
  local lock = lockKey(bid)
  local v = rcall('GET', lock)
  local fid
  if v and string.sub(v, 1, #LOCK) == LOCK then
    fid = string.sub(v, #LOCK + 1)
    rcall('PEXPIRE', lock, lockMs)
  elseif v == LEGACY_LOCK or not v then
    local ts = rcall('HGET', P .. bid, 'timestamp')
    if ts then
      fid = ts .. '-' .. bid
      if v or rcall('EXISTS', jobKey(fid)) == 1 then rcall('SET', lock, LOCK .. fid, 'PX', lockMs) else fid = nil end
    end
    if not v and not fid then
      local seq = rcall('HINCRBY', K.stats, 'seq', 1)
      if takeIn(bid, seq, seq, takeInContext()) then taken = taken + 1 end
    end
  end
  if fid then
    local f = rcall('HMGET', jobKey(fid), 'at', 'uid', 'order', 'claim', 'joins')
    if f[1] then
      relink(fid, f)
    else
      -- The fair queue lost it (or has it as the 2.0 fair queue described it): taken in again, from Bull's own
      -- record of it, once no run can have it any more.
      local b = (running[fid] or graceOver(fid)) and rcall('HMGET', P .. bid, 'data', 'opts', 'timestamp') or {}
      if b[3] then rcall('DEL', jobKey(fid)) end
      if b[3] and rcall('HSETNX', jobKey(fid), 'bid', bid) == 1 then
        local seq = rcall('HINCRBY', K.stats, 'seq', 1)
        -- Nothing of the lost record may linger where the job would be found twice.
        rcall('ZREM', K.retries, fid)
        rcall('ZREM', K.held, fid)
        rcall('ZREM', K.answers, fid)
        if running[fid] then
          local uid = describe(bid, fid, b, seq, seq, takeInContext())
          rcall('HSET', jobKey(fid), 'at', 'claimed', 'claim', running[fid])
          -- Counted against USER_CONCURRENCY as its claim surely was, if the cap is in use (see the rebuild below).
          if rcall('HEXISTS', K.running, uid) == 1 then rcall('HSET', jobKey(fid), 'capped', 1) end
        else
          place(bid, fid, b, seq, seq, takeInContext())
        end
        -- The jobs that had joined it are still listed: they end with it, as before.
        local followers = rcall('LLEN', joinedKey(fid))
        if followers > 0 then rcall('HSET', jobKey(fid), 'joined', followers) end
        if rcall('EXISTS', checkpointKey(fid)) == 1 then
          rcall('HSET', jobKey(fid), 'cp', 1)
          if rcall('HGET', jobKey(fid), 'at') == 'line' then
            leaveLine(rcall('HGET', jobKey(fid), 'uid'), fid, agingMs)
            toAnswers(fid, t)
          end
        end
        taken = taken + 1
      end
    end
  end
end
-- The last batch: USER_CONCURRENCY's counts are made again from the claims that recorded them, should any have
-- drifted (a record lost and taken in again); and what the sweep has not found unknown for a while is forgotten.
if #ids < count and rcall('HLEN', K.running) > 0 then
  local counted = {}
  for fid in pairs(running) do
    local c = rcall('HMGET', jobKey(fid), 'uid', 'capped')
    if c[1] and c[2] == '1' then counted[c[1]] = (counted[c[1]] or 0) + 1 end
  end
  for _, uid in ipairs(rcall('HKEYS', K.running)) do
    if not counted[uid] then rcall('HDEL', K.running, uid) end
  end
  for uid, n in pairs(counted) do rcall('HSET', K.running, uid, n) end
end
if #ids < count and anyUnknown then
  for _, fid in ipairs(rcall('HKEYS', unknown)) do
    if not deferred[fid] and t - tonumber(rcall('HGET', unknown, fid) or '0') > 4 * graceMs then rcall('HDEL', unknown, fid) end
  end
end
publishWake()
return {1, #ids, taken, relinked, epoch()}
