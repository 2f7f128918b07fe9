/**
 * The fair queue's Lua scripts. Each runs atomically in Redis, so no two workers can take the same job or
 * the same rate-limit slot, and a worker that dies between two scripts leaves a state another one can repair.
 * Times come from Redis' own clock (TIME), so workers on machines with skewed clocks still share one pace.
 *
 * Keys, all under `base` (the queue's prefix, `bull:<queue>:`), `f:` for the fair queue:
 * - `f:job:<id>`   HASH uid, data (JSON), ts, attempts, backoff, made, stalls: a job the fair queue holds
 * - `f:done:<id>`  a short-lived mark that the job has ended (Bull may hand the same job in again after a crash)
 * - `f:q:<uid>`    LIST of a user's ready job ids, oldest first
 * - `f:ring`       LIST of the users that have ready jobs, in the order they are served (round robin)
 * - `f:active`     ZSET job id -> lease deadline (ms): jobs a worker is running
 * - `f:inflight`   HASH uid -> jobs running (for USER_CONCURRENCY)
 * - `f:delayed`    ZSET job id -> when it may run again (a producer's Bull attempts and backoff)
 * - `f:pace`       HASH tat (the next free slot of the image API, ms), scale (slow-down factor), slowed (ms)
 * - `checkpoint:<id>` the image kept until delivery (see checkpointStore.ts), removed when the job ends
 * Channel `f:wake`: published when jobs become ready, so idle workers claim at once.
 */

/** Helpers every script starts with. ARGV[1] is always `base`. */
const LIB = `
local base = ARGV[1]
local F = base .. 'f:'
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A user is in the ring exactly while their list is not empty.
local function enqueue(uid, id, front)
  local n
  if front then n = redis.call('LPUSH', F .. 'q:' .. uid, id) else n = redis.call('RPUSH', F .. 'q:' .. uid, id) end
  if n == 1 then
    if front then redis.call('LPUSH', F .. 'ring', uid) else redis.call('RPUSH', F .. 'ring', uid) end
  end
end
local function release(uid)
  if redis.call('HINCRBY', F .. 'inflight', uid, -1) <= 0 then redis.call('HDEL', F .. 'inflight', uid) end
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
 * ARGV: base, leaseMs, userCap (0: none), paced (1/0), leadMs.
 * Due retries join their user's list first. When the image API's pace has no slot within leadMs, nothing is
 * claimed: a job taken now would only wait, holding a worker slot another user's job may need by then.
 * Then the next user in the ring (skipping users at their cap) gives up their oldest job.
 * Returns {1, id, fields} or {0, ms until worth asking again, or -1 for "when woken"}.
 */
export const CLAIM = `${LIB}
local lease, cap, paced, lead = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', tonumber(ARGV[5])
local t = now()
local due = redis.call('ZRANGEBYSCORE', F .. 'delayed', '-inf', t, 'LIMIT', 0, 100)
for _, id in ipairs(due) do
  redis.call('ZREM', F .. 'delayed', id)
  local uid = redis.call('HGET', F .. 'job:' .. id, 'uid')
  if uid then enqueue(uid, id, false) end
end
if paced then
  local tat = tonumber(redis.call('HGET', F .. 'pace', 'tat') or '0')
  if tat > t + lead then return {0, math.ceil(tat - lead - t)} end
end
local users = redis.call('LLEN', F .. 'ring')
for _ = 1, users do
  local uid = redis.call('LPOP', F .. 'ring')
  if not uid then break end
  if cap > 0 and tonumber(redis.call('HGET', F .. 'inflight', uid) or '0') >= cap then
    redis.call('RPUSH', F .. 'ring', uid)
  else
    local id = redis.call('LPOP', F .. 'q:' .. uid)
    if redis.call('EXISTS', F .. 'q:' .. uid) == 1 then redis.call('RPUSH', F .. 'ring', uid) end
    if id then
      local job = redis.call('HGETALL', F .. 'job:' .. id)
      if #job > 0 then
        redis.call('ZADD', F .. 'active', t + lease, id)
        redis.call('HINCRBY', F .. 'inflight', uid, 1)
        return {1, id, job}
      end
    end
  end
end
local nextDue = redis.call('ZRANGE', F .. 'delayed', 0, 0, 'WITHSCORES')
if #nextDue > 0 then return {0, math.max(0, tonumber(nextDue[2]) - t)} end
return {0, -1}
`;

/**
 * ARGV: base, id, uid, how ('done' | 'retry' | 'back'), doneTtlS, retryDelayMs, wakeOthers (1/0).
 * done: the job has ended; retry: run again after retryDelayMs (one more attempt made); back: to the front of
 * its user's list (shutdown handed it back). Returns 1 when this worker still held the job's lease.
 */
export const END = `${LIB}
local id, uid, how = ARGV[2], ARGV[3], ARGV[4]
local held = redis.call('ZREM', F .. 'active', id)
if held == 1 then release(uid) end
if how == 'done' then
  -- Only a job this Redis knows: a reply lost with a dying connection makes ioredis send this again, and on
  -- a Redis that came back empty the mark would turn away a new job that was given the same id.
  if held == 1 or redis.call('EXISTS', F .. 'job:' .. id) == 1 then markDone(id, tonumber(ARGV[5])) end
elseif redis.call('EXISTS', F .. 'job:' .. id) == 1 then
  if how == 'retry' then
    redis.call('HINCRBY', F .. 'job:' .. id, 'made', 1)
    redis.call('ZADD', F .. 'delayed', now() + tonumber(ARGV[6]), id)
  else
    enqueue(uid, id, true)
    redis.call('PUBLISH', F .. 'wake', '1')
  end
end
if ARGV[7] == '1' and how ~= 'back' and redis.call('EXISTS', F .. 'q:' .. uid) == 1 then
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
 * ARGV: base, maxStalls, doneTtlS. Jobs whose lease ran out (their worker died or blocked) go back to the
 * front of their user's list, or end when they have stalled more than maxStalls times.
 * Returns the ended ones as {id, fields, id, fields, ...}: the caller tells their users.
 */
export const REAP = `${LIB}
local maxStalls, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', F .. 'active', '-inf', now(), 'LIMIT', 0, 100)
local ended = {}
for _, id in ipairs(expired) do
  redis.call('ZREM', F .. 'active', id)
  local uid = redis.call('HGET', F .. 'job:' .. id, 'uid')
  if uid then
    release(uid)
    if redis.call('HINCRBY', F .. 'job:' .. id, 'stalls', 1) > maxStalls then
      table.insert(ended, id)
      table.insert(ended, redis.call('HGETALL', F .. 'job:' .. id))
      markDone(id, ttl)
    else
      enqueue(uid, id, true)
    end
  end
end
if #expired > #ended / 2 then redis.call('PUBLISH', F .. 'wake', '1') end
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
