--- @include "_lib"
--[[
  Moves jobs from Bull's wait list into the fair queue. Each stays in Bull's `active` list, locked by the fair
  queue (a lock without expiry: its leases live in fq:active), until the job ends; then END finishes it in Bull.

  ARGV: P, firstId (a job already moved to Bull's active by a blocking BRPOPLPUSH, or ''), batch, agingMs
  Returns {taken, joined, id, option, id, option, ...}: how many jobs joined users' lines, how many joined an
  identical job that was waiting or running, then the Bull options given that the worker does not apply.
]]
local firstId, batch, agingMs = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local LOCK = 'fair-queue'
local t = now()
local taken, joined, notes = 0, 0, {}
local seq = nil

-- Whose line a job waits in, and what makes two asks the same: the user, their page (Number, or none) and the
-- prompt. `page` keys the memory of failures told (a repeat is answered later); `same` lets an identical ask
-- join one waiting or running (only for a string prompt). Data without a usable Id waits in the '' line and
-- fails INVALID_JOB there.
local function identify(data)
  local ok, d = pcall(cjson.decode, data)
  if not ok or type(d) ~= 'table' then return '', '', '' end
  local id, prompt, number = d['Id'], d['Prompt'], d['Number']
  if type(id) ~= 'string' or #id == 0 or #id > 512 then return '', '', '' end
  local n = (number ~= nil and number ~= cjson.null) and cjson.encode(number) or ''
  local p = type(prompt) == 'string' and ('s' .. prompt) or ('x' .. type(prompt))
  local page = redis.sha1hex(id .. '\0' .. n .. '\0' .. p)
  return id, page, type(prompt) == 'string' and page or ''
end

-- Bull's removeOnComplete / removeOnFail as moveToFinished reads them: count (-1 keep all, 0 remove) and age.
local function keepRule(value)
  if value == true then return 0, '' end
  if type(value) == 'number' then return value, '' end
  if type(value) == 'table' then return tonumber(value['count']) or -1, tostring(tonumber(value['age']) or '') end
  return -1, ''
end

local function takeIn(bid)
  local bkey = P .. bid
  local f = rcall('HMGET', bkey, 'data', 'opts', 'timestamp')
  if not f[3] then
    rcall('LREM', K.bactive, -1, bid)
    return
  end
  -- Taken in once: a job already locked (by the fair queue, or by a plain Bull worker) is not ours to take.
  if not rcall('SET', bkey .. ':lock', LOCK, 'NX') then return end
  local ok, opts = pcall(cjson.decode, f[2] or '{}')
  if not ok or type(opts) ~= 'table' then opts = {} end
  local prio = tonumber(opts['priority']) or 0
  if prio > 0 then rcall('ZREM', K.priority, bid) end
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

  local fid = f[3] .. '-' .. bid
  local uid, page, same = identify(f[1])
  if not seq then seq = rcall('HINCRBY', K.stats, 'seq', batch + 1) - batch - 1 end
  seq = seq + 1
  -- Within a user's line: Bull's priority first (1 highest; above 255 counts as 255; none after all of them),
  -- then LIFO jobs newest first, then the rest oldest first. The order fits a ZSET score's 53 bits.
  local class = prio >= 1 and math.min(prio, 255) or 256
  local s = seq % 4398046511104
  local order = class * 17592186044416 + ((opts['lifo'] == true) and (8796093022208 - s) or (8796093022208 + s))
  local kc, ka = keepRule(opts['removeOnComplete'])
  local fc, fa = keepRule(opts['removeOnFail'])
  rcall('HSET', jobKey(fid), 'bid', bid, 'uid', uid, 'data', f[1], 'ts', f[3], 'order', order, 'page', page,
    'same', same, 'attempts', tonumber(opts['attempts']) or 1,
    'backoff', (backoff == nil or backoff == cjson.null) and 'null' or cjson.encode(backoff),
    'kc', kc, 'ka', ka, 'fc', fc, 'fa', fa)

  if same ~= '' and rcall('SETNX', F .. 'same:' .. same, fid) == 0 then
    local leader = rcall('GET', F .. 'same:' .. same)
    if leader and rcall('EXISTS', jobKey(leader)) == 1 then
      rcall('HSET', jobKey(fid), 'follows', leader)
      rcall('RPUSH', F .. 'with:' .. leader, fid)
      rcall('HSET', jobKey(leader), 'joined', 1)
      joined = joined + 1
      return
    end
    rcall('SET', F .. 'same:' .. same, fid)
  end
  enqueue(uid, fid, order, agingMs, t)
  taken = taken + 1
end

-- A blocking BRPOPLPUSH moved firstId; a resent script finds it taken in already (its lock is the queue's).
if firstId ~= '' then takeIn(firstId) end
for _ = 1, batch do
  local bid = rcall('RPOPLPUSH', K.wait, K.bactive)
  if not bid then break end
  takeIn(bid)
end
if joined > 0 then rcall('HINCRBY', K.stats, 'joined', joined) end
if taken > 0 then rcall('PUBLISH', F .. 'wake', '1') end
local reply = {taken, joined}
for _, v in ipairs(notes) do table.insert(reply, v) end
return reply
