/**
 * The fair queue's Lua scripts. Each runs atomically in Redis, so no two workers can take the same job or
 * the same rate-limit slot, and a worker that dies between two scripts leaves a state another one can repair.
 * Times come from Redis' own clock (TIME), so workers on machines with skewed clocks still share one pace.
 *
 * Keys, all under `base` (the queue's prefix, `bull:<queue>:`), `f:` for the fair queue:
 * - `f:job:<id>`   HASH uid, data (JSON), ts, attempts, backoff, made, stalls: a job the fair queue holds
 * - `f:done:<id>`  a short-lived mark that the job has ended (Bull may hand the same job in again after a crash)
 * - `f:q:<uid>`    LIST of a user's ready job ids, oldest first
 * - `f:ring`       LIST of the users that have ready jobs, served from the tail (RPOPLPUSH rotates the one served
 *                  to the head): round robin in one command; a user new to the ring joins at the head, last in line
 * - `f:active`     ZSET job id -> lease deadline (ms): jobs a worker is running
 * - `f:inflight`   HASH uid -> jobs running, kept only while USER_CONCURRENCY caps users
 * - `f:delayed`    ZSET job id -> when it may run again (a producer's Bull attempts and backoff)
 * - `f:pace`       HASH tat (the next free slot of the image API, ms), scale (slow-down factor), slowed (ms)
 * - `checkpoint:<id>` the image kept until delivery (see checkpointStore.ts), removed when the job ends
 * Channel `f:wake`: published when jobs become ready, so idle workers claim at once.
 *
 * Every command a script runs counts in Redis' own statistics, so the common paths are kept short: a claim is
 * six commands, an end three.
 */

/** Helpers every script starts with. ARGV[1] is always `base`. */
const LIB = `
local base = ARGV[1]
local F = base .. 'f:'
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A user is in the ring exactly while their list is not empty. front: first in their line, and (if they were not
-- waiting) next in the round.
local function enqueue(uid, id, front)
  local n
  if front then n = redis.call('LPUSH', F .. 'q:' .. uid, id) else n = redis.call('RPUSH', F .. 'q:' .. uid, id) end
  if n == 1 then
    if front then redis.call('RPUSH', F .. 'ring', uid) else redis.call('LPUSH', F .. 'ring', uid) end
  end
end
local function release(uid, capped)
  if capped and redis.call('HINCRBY', F .. 'inflight', uid, -1) <= 0 then redis.call('HDEL', F .. 'inflight', uid) end
end
-- Jobs whose retry is due join their users' lines.
local function promote(t)
  local due = redis.call('ZRANGEBYSCORE', F .. 'delayed', '-inf', t, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    redis.call('ZREM', F .. 'delayed', id)
    local uid = redis.call('HGET', F .. 'job:' .. id, 'uid')
    if uid then enqueue(uid, id, false) end
  end
  return #due
end
local function markDone(id, ttl)
  redis.call('DEL', F .. 'job:' .. id, base .. 'checkpoint:' .. id)
  redis.call('SET', F .. 'done:' .. id, '1', 'EX', ttl)
end
`;

/** ARGV: base, id, uid, data, ts, attempts, backoff. Returns 1 when taken in, 0 when the job is known already. */
export const INTAKE = `${LIB}
local id = ARGV[2]
if redis.call('EXISTS', F .. 'job:' .. id, F .. 'done:' .. id) > 0 then return 0 end
local uid = ARGV[3]
redis.call('HSET', F .. 'job:' .. id, 'uid', uid, 'data', ARGV[4], 'ts', ARGV[5], 'attempts', ARGV[6],
  'backoff', ARGV[7], 'made', 0, 'stalls', 0)
enqueue(uid, id, false)
redis.call('PUBLISH', F .. 'wake', '1')
return 1
`;

/**
 * ARGV: base, leaseMs, userCap (0: none), paced (1/0), holdMs.
 * With the pace on, nothing is claimed until the image API's next slot is free: a job taken earlier would only
 * wait, and the next user in the round should have that slot. Then the next user in the ring (skipping users at
 * their cap) gives up their oldest job. Returns {1, id, fields} or {0, ms until the next slot, or -1: when woken}.
 */
export const CLAIM = `${LIB}
local lease, cap, paced = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local t = now()
if paced then
  -- 'hold': a job was claimed for the free slot a moment ago and has not reserved it yet; workers asking in
  -- that moment wait rather than claim the same slot for another job.
  local pace = redis.call('HMGET', F .. 'pace', 'tat', 'hold')
  local free = math.max(tonumber(pace[1] or '0'), tonumber(pace[2] or '0'))
  if free > t then return {0, math.ceil(free - t)} end
end
local tries = 1
if cap > 0 then tries = redis.call('LLEN', F .. 'ring') end
for _ = 1, tries do
  local uid = redis.call('RPOPLPUSH', F .. 'ring', F .. 'ring')
  if not uid then break end
  if cap == 0 or tonumber(redis.call('HGET', F .. 'inflight', uid) or '0') < cap then
    local id = redis.call('LPOP', F .. 'q:' .. uid)
    if redis.call('EXISTS', F .. 'q:' .. uid) == 0 then redis.call('LPOP', F .. 'ring') end
    if id then
      local job = redis.call('HGETALL', F .. 'job:' .. id)
      if #job > 0 then
        redis.call('ZADD', F .. 'active', t + lease, id)
        if cap > 0 then redis.call('HINCRBY', F .. 'inflight', uid, 1) end
        if paced then redis.call('HSET', F .. 'pace', 'hold', t + tonumber(ARGV[5])) end
        return {1, id, job}
      end
    end
    -- An id whose job has ended already (see END), or none: ask again at once.
    return {0, 0}
  end
end
return {0, -1}
`;

/** ARGV: base. Jobs whose retry is due join their users' lines; returns how many. */
export const PROMOTE = `${LIB}
local n = promote(now())
if n > 0 then redis.call('PUBLISH', F .. 'wake', '1') end
return n
`;

/**
 * ARGV: base, id, uid, how ('done' | 'retry' | 'back'), doneTtlS, retryDelayMs, userCap (0: none).
 * done: the job has ended; retry: run again after retryDelayMs (one more attempt made; the worker that retries it
 * promotes it when due, the reaper if that worker dies); back: first in its user's line (shutdown handed it back).
 * Returns 1 when this worker still held the job's lease.
 */
export const END = `${LIB}
local id, uid, how, capped = ARGV[2], ARGV[3], ARGV[4], ARGV[7] ~= '0'
local held = redis.call('ZREM', F .. 'active', id)
if held == 1 then release(uid, capped) end
if how == 'done' then
  -- Only a job this Redis knows: a reply lost with a dying connection makes ioredis send this again, and on
  -- a Redis that came back empty the mark would turn away a new job that was given the same id.
  if held == 1 or redis.call('EXISTS', F .. 'job:' .. id) == 1 then markDone(id, tonumber(ARGV[5])) end
elseif redis.call('EXISTS', F .. 'job:' .. id) == 1 then
  if how == 'retry' then
    redis.call('HINCRBY', F .. 'job:' .. id, 'made', 1)
    redis.call('ZADD', F .. 'delayed', now() + tonumber(ARGV[6]), id)
  else
    redis.call('HSET', F .. 'job:' .. id, 'back', 1)
    enqueue(uid, id, true)
    redis.call('PUBLISH', F .. 'wake', '1')
  end
end
-- A user at their cap may have jobs another worker could run now.
if capped and how ~= 'back' and redis.call('EXISTS', F .. 'q:' .. uid) == 1 then
  redis.call('PUBLISH', F .. 'wake', '1')
end
return held
`;

/** ARGV: base, leaseMs, id... Extends the leases of the jobs this worker runs (a lost one stays lost). */
export const RENEW = `${LIB}
local deadline = now() + tonumber(ARGV[2])
for i = 3, #ARGV do redis.call('ZADD', F .. 'active', 'XX', deadline, ARGV[i]) end
return #ARGV - 2
`;

/**
 * ARGV: base, maxStalls, doneTtlS, userCap (0: none). Jobs whose lease ran out (their worker died or blocked) go
 * back to the front of their user's list, or end when they have stalled more than maxStalls times; retries that
 * are due (their worker died before promoting them) join their lines too.
 * Returns the ended ones as {id, fields, id, fields, ...}: the caller tells their users.
 */
export const REAP = `${LIB}
local maxStalls, ttl, capped = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] ~= '0'
local t = now()
local promoted = promote(t)
local expired = redis.call('ZRANGEBYSCORE', F .. 'active', '-inf', t, 'LIMIT', 0, 100)
local ended = {}
for _, id in ipairs(expired) do
  redis.call('ZREM', F .. 'active', id)
  local uid = redis.call('HGET', F .. 'job:' .. id, 'uid')
  if uid then
    release(uid, capped)
    if redis.call('HINCRBY', F .. 'job:' .. id, 'stalls', 1) > maxStalls then
      table.insert(ended, id)
      table.insert(ended, redis.call('HGETALL', F .. 'job:' .. id))
      markDone(id, ttl)
    else
      enqueue(uid, id, true)
    end
  end
end
if promoted > 0 or #expired > #ended / 2 then redis.call('PUBLISH', F .. 'wake', '1') end
return ended
`;

/**
 * ARGV: base, intervalMs, deadlineInMs (-1: none), idleTtlMs. Reserves the next slot of the image API for the
 * whole fleet (GCRA: one request every interval x scale, no bursts). Returns the ms to wait for it, or -1 when
 * the slot would come after the deadline (nothing is reserved then). Every slot handed out eases a slow-down.
 */
export const ACQUIRE = `${LIB}
local interval, deadlineIn, idleTtl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = now()
local pace = redis.call('HMGET', F .. 'pace', 'tat', 'scale')
local tat, scale = tonumber(pace[1] or '0'), tonumber(pace[2] or '1')
local at = math.max(t, tat)
if deadlineIn >= 0 and at - t > deadlineIn then return -1 end
redis.call('HSET', F .. 'pace', 'tat', tostring(at + interval * scale), 'scale', tostring(math.max(1, scale * 0.97)))
redis.call('PEXPIRE', F .. 'pace', idleTtl)
return math.ceil(at - t)
`;

/**
 * ARGV: base, intervalMs, retryAfterMs (-1: not given), idleTtlMs. The image API answered "rate limited": no slot
 * before Retry-After (or two intervals), and the pace slows by half, at most once per second however many
 * requests hear the 429 together; ACQUIRE eases it back as slots go by without one.
 */
export const SLOW_DOWN = `${LIB}
local interval, retryAfter, idleTtl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = now()
local pace = redis.call('HMGET', F .. 'pace', 'tat', 'scale', 'slowed')
local tat, scale, slowed = tonumber(pace[1] or '0'), tonumber(pace[2] or '1'), tonumber(pace[3] or '0')
if t - slowed >= 1000 then
  scale = math.min(scale * 1.5, 16)
  slowed = t
end
local pause = retryAfter >= 0 and retryAfter or 2 * interval * scale
redis.call('HSET', F .. 'pace', 'tat', tostring(math.max(tat, t + pause)), 'scale', tostring(scale), 'slowed', tostring(slowed))
redis.call('PEXPIRE', F .. 'pace', idleTtl)
return math.ceil(scale * 100)
`;

/** ARGV: base. {users waiting, jobs ready, running, delayed}. O(users waiting): for the stats line. */
export const COUNTS = `${LIB}
local users = redis.call('LRANGE', F .. 'ring', 0, -1)
local ready = 0
for _, uid in ipairs(users) do ready = ready + redis.call('LLEN', F .. 'q:' .. uid) end
return {#users, ready, redis.call('ZCARD', F .. 'active'), redis.call('ZCARD', F .. 'delayed')}
`;
