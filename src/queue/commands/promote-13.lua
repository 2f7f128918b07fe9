--- @include "_lib"
--- @include "_promote"
--[[
  Brings due retries and due failure answers into their users' lines (the worker that put them aside calls it
  when they are due; the reaper does too, should that worker have died).
  ARGV: P, agingMs
  Returns how many moved.
]]
local moved = promote(now())
if moved > 0 then rcall('PUBLISH', F .. 'wake', '1') end
return moved
