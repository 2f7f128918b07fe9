--[[
  Due retries join their users' lines where they were (and identical asks may join them again); due answers held
  back go to the answers, to be told by whichever worker claims them first. Returns how many moved.
]]
local function promote(t, agingMs)
  local moved = 0
  local due = rcall('ZRANGEBYSCORE', K.retries, '-inf', t, 'LIMIT', 0, 100)
  for _, fid in ipairs(due) do
    rcall('ZREM', K.retries, fid)
    local f = rcall('HMGET', jobKey(fid), 'uid', 'order', 'ask')
    if f[1] then
      enqueue(f[1], fid, tonumber(f[2]), agingMs, t)
      if f[3] and f[3] ~= '' then rcall('SET', askKey(f[3]), fid, 'NX') end
      moved = moved + 1
    end
  end
  due = rcall('ZRANGEBYSCORE', K.held, '-inf', t, 'LIMIT', 0, 100)
  for _, fid in ipairs(due) do
    rcall('ZREM', K.held, fid)
    if rcall('EXISTS', jobKey(fid)) == 1 then
      toAnswers(fid, t)
      moved = moved + 1
    end
  end
  return moved
end
