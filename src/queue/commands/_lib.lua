--[[
  Prepended to every fair-queue script (see ../scripts.ts). Every script gets the same fixed keys first, so a
  script can name them as K.<name>; the keys of one job come after them (each script's header says which).

  KEYS[1..13] (all under the queue's prefix P, e.g. `{bull}:Grok_Image_Generator:`):
    1 fq:users     ZSET  user -> waiting jobs x agingMs + when they started waiting: who is served next
    2 fq:active    ZSET  "<token>|<fid>" -> lease deadline (ms, Redis clock): running jobs and their fencing tokens
    3 fq:delayed   ZSET  fid -> when a producer's retry may run (Bull attempts + backoff)
    4 fq:held      ZSET  fid -> when a failure answer held back may be told
    5 fq:inflight  HASH  user -> running jobs counted against USER_CONCURRENCY
    6 fq:stats     HASH  seq (order of intake), joined (jobs waiting on an identical one), heldBack (answers held)
    7 fq:pace      HASH  the image API's shared pace (see src/capacity/commands)
    8 wait  9 active  10 priority  11 stalled  12 completed  13 failed: Bull's own lists and sets

  Keys built here from P share the prefix, so with a hash-tagged prefix they live in the declared keys' slot.
  ARGV[1] is always P.
]]
local rcall = redis.call
local P = ARGV[1]
local F = P .. 'fq:'
local K = {
  users = KEYS[1], active = KEYS[2], delayed = KEYS[3], held = KEYS[4], inflight = KEYS[5], stats = KEYS[6],
  pace = KEYS[7], wait = KEYS[8], bactive = KEYS[9], priority = KEYS[10], stalled = KEYS[11],
  completed = KEYS[12], failed = KEYS[13],
}

local function now()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function jobKey(fid) return F .. 'job:' .. fid end
local function lineKey(uid) return F .. 'q:' .. uid end

-- A job joins its user's line at `order`; the user's place among users grows by one job's worth of aging.
-- A user new to the line is ranked from now: fewest waiting first, then the one waiting longest.
local function enqueue(uid, fid, order, agingMs, t)
  rcall('ZADD', lineKey(uid), order, fid)
  if rcall('ZADD', K.users, 'NX', agingMs + t, uid) == 0 then rcall('ZINCRBY', K.users, agingMs, uid) end
end

-- Takes fid's running count back, as the claim recorded it (not by the ending worker's settings).
local function release(job, uid)
  if rcall('HGET', job, 'capped') == '1' then
    rcall('HDEL', job, 'capped')
    if rcall('HINCRBY', K.inflight, uid, -1) <= 0 then rcall('HDEL', K.inflight, uid) end
  end
end

-- A run that ends without asking the image API gives back the pace slot its claim held for a moment.
local function freeSlot(fid)
  if rcall('HGET', K.pace, 'holder') == fid then rcall('HDEL', K.pace, 'hold', 'holder') end
end

-- The fid of an active-set member "<token>|<fid>".
local function fidOf(member) return string.sub(member, string.find(member, '|', 1, true) + 1) end
