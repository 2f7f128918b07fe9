--- @include "_lib"
--- @include "_takein"
--[[
  Moves jobs from Bull's wait list into the fair queue (see _takein.lua). Each stays in Bull's `active` list,
  locked for the fair queue, until END finishes it there.

  ARGV: P, firstId (a job a blocking BRPOPLPUSH already moved to Bull's active list, or ''), batch, agingMs,
        lockMs, maxIdBytes, remember (1: an ask with a picture kept lately goes to the answers), epoch, room (how
        many jobs the calling worker claims now: the fleet is woken only for jobs beyond them)
  Returns {lined, joined, answers, read (ids read from Bull's wait list), n, n/2 x (id, option): the Bull options
           given that the worker does not apply, then fid, data of each job that went into a line}.
]]
local firstId, batch, agingMs = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
-- Read first, then placed: jobs read together keep the order Bull would run them in (see lineOrder).
local ids = {}
if firstId ~= '' then ids[1] = firstId end
for _ = 1, batch do
  local bid = rcall('RPOPLPUSH', K.wait, K.active)
  if not bid then break end
  ids[#ids + 1] = bid
end
if #ids == 0 then return {0, 0, 0, 0, 0} end

local c = {t = now(), agingMs = agingMs, lockMs = tonumber(ARGV[5]), maxIdBytes = tonumber(ARGV[6]),
  remember = ARGV[7] == '1', epoch = tonumber(ARGV[8]), notes = {}, floors = {}}

local base = rcall('HINCRBY', K.stats, 'seq', #ids) - #ids
local counts, lined = {lined = 0, joined = 0, answers = 0}, {}
for i, bid in ipairs(ids) do
  local where, fid, data = takeIn(bid, base + i, base + #ids + 1 - i, c)
  if where then counts[where] = counts[where] + 1 end
  if where == 'lined' then
    table.insert(lined, fid)
    table.insert(lined, data)
  end
end
if counts.lined + counts.answers > tonumber(ARGV[9]) then publishWake() end
local reply = {counts.lined, counts.joined, counts.answers, #ids, #c.notes}
for _, v in ipairs(c.notes) do table.insert(reply, v) end
for _, v in ipairs(lined) do table.insert(reply, v) end
return reply
