--- @include "_lib"
--- @include "_promote"
--[[
  Brings due retries into their users' lines and due answers held back to the answers (the worker that set them
  aside calls it when they are due; every reaper does too, should that worker have died).
  ARGV: P, agingMs
  Returns how many moved.
]]
local moved = promote(now(), tonumber(ARGV[2]))
publishWake()
return moved
