--[[
  Takes one job that sits in Bull's active list into the fair queue: locked for it ("fair-queue:<fid>", expiring
  unless a live worker keeps it: see sweep), described in fq:job:<fid> and placed. Shared by INTAKE (jobs read
  from Bull's wait list) and SWEEP (jobs locked for the fair queue that it does not know).

  Whose line a job waits in, and what makes two asks the same: the user, their page (Number, or none) and the
  prompt (`ask`). An ask identical to one waiting or running joins it: one image, one delivery. Data without a
  string Id goes to the answers: its run fails INVALID_JOB (the rules on job data are src/pipeline/steps/jobData.ts'; the
  byte bound here only keeps key names small).
  Returns 'lined', 'joined', 'answers' or nil (not ours to take, or gone), the fid, and for 'lined' the job's data.

  `c`, the take-in's context: t (Redis' clock), agingMs, lockMs, maxIdBytes, epoch (the fleet's), remember (an ask
  with a picture kept goes to the answers), notes (Bull options the worker does not apply, collected), floors (per
  user, the order of the last job read in this batch: see lineOrder; nil when jobs come one by one).
]]
local function identify(data, maxIdBytes)
  local ok, d = pcall(cjson.decode, data)
  if not ok or type(d) ~= 'table' then return '', '', false end
  local id, prompt, number = d['Id'], d['Prompt'], d['Number']
  if type(id) ~= 'string' or #id == 0 or #id > maxIdBytes then return '', '', false end
  local n = (number ~= nil and number ~= cjson.null) and cjson.encode(number) or ''
  local p = type(prompt) == 'string' and ('s' .. prompt) or ('x' .. type(prompt))
  return id, redis.sha1hex(id .. '\0' .. n .. '\0' .. p), type(prompt) == 'string'
end

-- Where a job goes in its user's line, as Bull would run it: lifo jobs first, newest first (Bull pushes them to
-- the end it reads from); then by priority, 1 highest; then the rest, oldest first. `fifo` counts up in the order
-- jobs were read from Bull's wait list; `lifo` counts up too, but backwards within one read. Jobs of one user read
-- together keep exactly the order Bull gave them (INTAKE passes the last one's order as a floor): Bull 4 places a
-- prioritized job between lifo jobs when they meet in its list, and its order is the one producers see. The order
-- fits a ZSET score's 53 bits.
local function lineOrder(opts, fifo, lifo)
  local prio = tonumber(opts['priority']) or 0
  local base = 8796093022208
  if prio >= 1 then return math.min(prio, 255) * 17592186044416 + base + fifo % base end
  if opts['lifo'] == true then return base - lifo % base end
  return 256 * 17592186044416 + base + fifo % base
end

-- Describes a Bull job the fair queue now has (fields `f` of Bull's hash: data, opts, timestamp) in fq:job:<fid>.
-- Returns its user, ask, whether it may join an identical job, and its order in its user's line.
-- It is described as in its user's line (`at`); placing it elsewhere says so.
local function describe(bid, fid, f, fifo, lifo, c)
  local job = jobKey(fid)
  local notes = c.notes
  local okOpts, opts = pcall(cjson.decode, f[2] or '{}')
  if not okOpts or type(opts) ~= 'table' then opts = {} end
  if (tonumber(opts['priority']) or 0) > 0 then rcall('ZREM', K.priority, bid) end
  for _, name in ipairs({'timeout', 'repeat'}) do
    if opts[name] ~= nil and opts[name] ~= cjson.null then
      table.insert(notes, bid)
      table.insert(notes, name)
    end
  end
  local backoff = opts['backoff']
  if type(backoff) == 'table' and backoff['type'] ~= 'fixed' and backoff['type'] ~= 'exponential' then
    table.insert(notes, bid)
    table.insert(notes, 'backoff')
  end

  local uid, ask, joinable = identify(f[1], c.maxIdBytes)
  local order = lineOrder(opts, fifo, lifo)
  if c.floors then
    order = math.max(order, c.floors[uid] or 0)
    c.floors[uid] = order + 1
  end
  local kc, ka = keepRule(opts['removeOnComplete'])
  local fc, fa = keepRule(opts['removeOnFail'])
  rcall('HSET', job, 'uid', uid, 'data', f[1], 'ts', f[3], 'order', order, 'ask', ask,
    'attempts', tonumber(opts['attempts']) or 1,
    'backoff', (backoff == nil or backoff == cjson.null) and 'null' or cjson.encode(backoff),
    'kc', kc, 'ka', ka, 'fc', fc, 'fa', fa, 'epoch', c.epoch, 'at', 'line')
  return uid, ask, joinable, order
end

-- Places a described job: in the answers, joined to an identical job, or in its user's line.
local function place(bid, fid, f, fifo, lifo, c)
  local uid, ask, joinable, order = describe(bid, fid, f, fifo, lifo, c)
  local job = jobKey(fid)
  if uid == '' then
    toAnswers(fid, c.t)
    return 'answers', fid
  end
  -- A picture delivered for this very ask lately is given again without the pace (REMEMBER_PICTURES_S).
  if c.remember and joinable and rcall('EXISTS', P .. 'picture:' .. ask) == 1 then
    rcall('HSET', job, 'remembered', 1)
    toAnswers(fid, c.t)
    return 'answers', fid
  end
  if joinable and not rcall('SET', askKey(ask), fid, 'NX') then
    local leader = rcall('GET', askKey(ask))
    local l = rcall('HMGET', jobKey(leader), 'at', 'answer')
    -- Joined only while the leader waits in line or runs: not to an answer, a retry or an answer held back.
    if (l[1] == 'line' or l[1] == 'claimed') and not l[2] then
      rcall('HSET', job, 'joins', leader, 'at', 'joined')
      rcall('RPUSH', joinedKey(leader), fid)
      rcall('HINCRBY', jobKey(leader), 'joined', 1)
      rcall('HINCRBY', K.stats, 'joined', 1)
      return 'joined', fid
    end
    rcall('SET', askKey(ask), fid)
  end
  enqueue(uid, fid, order, c.agingMs, c.t, true)
  return 'lined', fid, f[1]
end

local function takeIn(bid, fifo, lifo, c)
  local bkey = P .. bid
  local f = rcall('HMGET', bkey, 'data', 'opts', 'timestamp')
  if not f[3] then
    rcall('LREM', K.active, -1, bid)
    return nil
  end
  local fid = f[3] .. '-' .. bid
  -- Taken in once: a job locked already (by the fair queue, or by a plain Bull worker) is not ours to take.
  if not rcall('SET', lockKey(bid), LOCK .. fid, 'NX', 'PX', c.lockMs) then return nil end
  -- Still the fair queue's (Bull put it back in its wait list after its lock lapsed): it stays where it is.
  if rcall('HSETNX', jobKey(fid), 'bid', bid) == 0 then return nil, fid end
  return place(bid, fid, f, fifo, lifo, c)
end
