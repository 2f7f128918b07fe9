--- @include "_lib"
--[[
  Jobs found at intake to need no image request (their data or their token fails the worker's rules) leave their
  users' lines for the answers: they are answered at once, whatever the pace. A job no longer in its line (it was
  claimed meanwhile) stays as it is.
  ARGV: P, agingMs, fid...
  Returns how many moved.
]]
local agingMs = tonumber(ARGV[2])
local t = now()
local moved = 0
for i = 3, #ARGV do
  local fid = ARGV[i]
  local uid = rcall('HGET', jobKey(fid), 'uid')
  if uid and leaveLine(uid, fid, agingMs) then
    rcall('HSET', jobKey(fid), 'refused', 1)
    toAnswers(fid, t)
    moved = moved + 1
  end
end
publishWake()
return moved
