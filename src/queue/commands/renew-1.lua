--- @include "../../redis/_time"
--[[
  Extends the claims a worker holds. A claim that is gone (it lapsed and was taken back, and maybe claimed again)
  stays gone: it is reported, so that the worker stops that run. A claim whose deadline has passed but that nobody
  took back yet is still the holder's, and is extended.

  KEYS: 1 fq:claims
  ARGV: leaseMs, member ("<token>|<fid>")...
  Returns the members whose claim was lost.
]]
local deadline = now() + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[i]) == 0 and not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    table.insert(lost, ARGV[i])
  end
end
return lost
