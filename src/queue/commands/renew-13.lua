--- @include "_lib"
--[[
  Extends the claims a worker has. A claim that is gone (it lapsed and was taken back, and maybe claimed again)
  stays gone: it is reported, so that the worker stops that run. A claim whose deadline has passed but that nobody
  took back yet is still its run's, and is extended; so is one whose member was lost while the job's own record
  still names its token (see claimStands).

  KEYS: the 13 fixed keys
  ARGV: P, leaseMs, member ("<token>|<fid>")...
  Returns the members whose claim was lost.
]]
local deadline = now() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  local member = ARGV[i]
  if rcall('ZADD', K.claims, 'XX', 'CH', deadline, member) == 0 then
    local token = string.sub(member, 1, string.find(member, '|', 1, true) - 1)
    if not claimStands(token, fidOf(member), deadline) then table.insert(lost, member) end
  end
end
return lost
