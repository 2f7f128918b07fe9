-- The claim (see claim-13.lua), shared with END, which claims the next job in the same round trip.
-- Returns {1, fid, token, fields} or {0, ms until the next slot, or -1: nothing to claim (wait to be woken)}.
local function claimNext(t, leaseMs, cap, paced, holdMs, agingMs)
  if paced then
    local pace = rcall('HMGET', K.pace, 'tat', 'hold')
    local free = math.max(tonumber(pace[1] or '0'), tonumber(pace[2] or '0'))
    if free > t then return {0, math.ceil(free - t)} end
  end

  local uid
  if cap == 0 then
    uid = rcall('ZRANGE', K.users, 0, 0)[1]
  else
    -- Users at their cap are passed over; a page of 100 at a time bounds the work when many are.
    local from = 0
    while not uid do
      local page = rcall('ZRANGE', K.users, from, from + 99)
      if #page == 0 then break end
      for _, u in ipairs(page) do
        if tonumber(rcall('HGET', K.inflight, u) or '0') < cap then uid = u break end
      end
      from = from + 100
    end
  end
  if not uid then return {0, -1} end

  local line = lineKey(uid)
  local fid = rcall('ZPOPMIN', line)[1]
  if rcall('EXISTS', line) == 0 then rcall('ZREM', K.users, uid) else rcall('ZINCRBY', K.users, -agingMs, uid) end
  if not fid then return {0, 0} end
  local job = jobKey(fid)
  local fields = rcall('HGETALL', job)
  if #fields == 0 then return {0, 0} end
  local token = rcall('HINCRBY', job, 'claims', 1)
  rcall('ZADD', K.active, t + leaseMs, token .. '|' .. fid)
  if cap > 0 then
    rcall('HSET', job, 'capped', 1)
    rcall('HINCRBY', K.inflight, uid, 1)
  end
  -- A failure answer or data without a user never asks the image API: it holds no slot.
  local needsApi = uid ~= ''
  for i = 1, #fields, 2 do if fields[i] == 'answer' then needsApi = false end end
  if paced and needsApi then rcall('HSET', K.pace, 'hold', t + holdMs, 'holder', fid) end
  return {1, fid, token, fields}
end
