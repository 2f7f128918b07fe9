--- @include "_lib"
--- @include "_takein"
--[[
  Walks Bull's active list, which holds every job the fair queue holds, once per STALLED_INTERVAL_MS for the
  whole fleet (the worker that sets fq:swept first; a worker that died holding it is passed over):
  - keeps Bull's lock of each job the fair queue holds ("fair-queue:<fid>", lockMs): a lock no live worker keeps
    lapses, and Bull's own stalled check (a plain Bull worker's, after a roll-back) returns the job to Bull's wait
    list;
  - takes in a job nobody holds (read from Bull's wait list by a worker that died before taking it in), and again
    a job the fair queue no longer knows (its keys were lost: an operator's DEL, a failover);
  - puts back where it belongs a job the fair queue knows but that is in none of its places (fq:users, a user's
    line, fq:claims, ... lost).
  A job that a run may still hold (locked for the fair queue but unknown to it, or recorded as claimed by a claim
  that is gone) is left alone for graceMs first (fq:unknown): a live run renews its claim within that time, or ends
  the job, or finds its claim lost and stops; only then is the job run again, so it is never run twice at once.
  In pages of `count` ids, from `start`; the worker calls it again while a page comes back full.

  KEYS: the 13 fixed keys, 14 fq:swept (STRING: the worker sweeping this round), 15 fq:unknown (HASH fid -> when
        the sweep first found it unknown)
  ARGV: P, worker, flagMs, lockMs, agingMs, maxIdBytes, start, count, presence ('channel' | 'shard' | 'off'), graceMs
  Returns {0} when another worker sweeps this round, else {1, ids looked at, taken in, put back}.
]]
local self, flagMs, lockMs, agingMs = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local maxIdBytes, start, count, presence = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local graceMs = tonumber(ARGV[10])
local flag, unknown = KEYS[14], KEYS[15]
local t = now()

if start == 0 then
  if not rcall('SET', flag, self, 'NX', 'PX', flagMs) then
    local holder = rcall('GET', flag)
    local alive = presence == 'off' or (holder and tonumber(rcall('PUBSUB', presence == 'shard' and 'SHARDNUMSUB' or 'NUMSUB', F .. 'worker:' .. holder)[2]) > 0)
    if alive and holder ~= self then return {0} end
    rcall('SET', flag, self, 'PX', flagMs)
  end
elseif rcall('GET', flag) ~= self then
  return {0}
end

-- The runs under way, by fid: a job running when the fair queue lost its record goes on running.
local running = {}
for _, member in ipairs(rcall('ZRANGE', K.claims, 0, -1)) do
  local fid = fidOf(member)
  running[fid] = string.sub(member, 1, #member - #fid - 1)
end

local taken, relinked = 0, 0
local deferred = {}
local anyUnknown = rcall('HLEN', unknown) > 0
-- Whether a job that a run may still hold has waited out its grace (and so may run again).
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
    -- Its claim's member is gone: a live run writes it back at its next renewal (see holds); past the grace, it
    -- is taken back as a lapsed claim is.
    if not graceOver(fid) then return end
    rcall('HDEL', jobKey(fid), 'claim')
    if f[6] == '1' then toAnswers(fid, t) else enqueue(uid, fid, tonumber(f[3]), agingMs, t) end
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
      if takeIn(bid, seq, seq, t, lockMs, agingMs, maxIdBytes, {}) then taken = taken + 1 end
    end
  end
  if fid then
    local f = rcall('HMGET', jobKey(fid), 'at', 'uid', 'order', 'claim', 'joins', 'cp')
    if f[1] then
      relink(fid, f)
    else
      -- The fair queue lost it (or holds it as the 2.0 fair queue described it): taken in again, from Bull's own
      -- record of it, once no run can hold it any more.
      local b = (running[fid] or graceOver(fid)) and rcall('HMGET', P .. bid, 'data', 'opts', 'timestamp') or {}
      if b[3] then rcall('DEL', jobKey(fid)) end
      if b[3] and rcall('HSETNX', jobKey(fid), 'bid', bid) == 1 then
        local seq = rcall('HINCRBY', K.stats, 'seq', 1)
        if running[fid] then
          describe(bid, fid, b, seq, seq, maxIdBytes, {})
          rcall('HSET', jobKey(fid), 'at', 'claimed', 'claim', running[fid])
        else
          place(bid, fid, b, seq, seq, t, agingMs, maxIdBytes, {})
        end
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
-- The last page: what the sweep has not found unknown for a while is forgotten.
if #ids < count and anyUnknown then
  for _, fid in ipairs(rcall('HKEYS', unknown)) do
    if not deferred[fid] and t - tonumber(rcall('HGET', unknown, fid) or '0') > 4 * graceMs then rcall('HDEL', unknown, fid) end
  end
end
publishWake()
return {1, #ids, taken, relinked}
