-- Retries that are due join their users' lines where they were; failure answers that are due go first.
-- Returns how many moved.
local function promote(t)
  local moved = 0
  for _, set in ipairs({K.delayed, K.held}) do
    local due = rcall('ZRANGEBYSCORE', set, '-inf', t, 'LIMIT', 0, 100)
    for _, fid in ipairs(due) do
      rcall('ZREM', set, fid)
      local f = rcall('HMGET', jobKey(fid), 'uid', 'order')
      if f[1] then
        enqueue(f[1], fid, set == K.held and 0 or tonumber(f[2]), tonumber(ARGV[2]), t)
        moved = moved + 1
      end
    end
  end
  return moved
end
