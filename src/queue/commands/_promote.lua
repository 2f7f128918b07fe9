--[[
  Due retries go back where they were (see placeBack; identical asks may join them again); due answers held back go
  to the answers, to be told by whichever worker claims them first. A fid whose job is elsewhere by now (its record
  was lost and taken in again) is only dropped. Returns how many moved.
]]
local function promote(t, agingMs)
  local moved = 0
  for _, from in ipairs({{K.retries, 'retry'}, {K.held, 'held'}}) do
    local due = rcall('ZRANGEBYSCORE', from[1], '-inf', t, 'LIMIT', 0, 100)
    for _, fid in ipairs(due) do
      rcall('ZREM', from[1], fid)
      local job = jobKey(fid)
      if rcall('HGET', job, 'at') == from[2] then
        local f = placeFields(job)
        placeBack(fid, f, agingMs, t)
        if from[2] == 'retry' and f.ask and f.ask ~= '' then rcall('SET', askKey(f.ask), fid, 'NX') end
        moved = moved + 1
      end
    end
  end
  return moved
end
