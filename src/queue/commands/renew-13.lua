--- @include "_lib"
--[[
  Extends the claims a worker has. A claim that is gone (it lapsed and was taken back, and maybe claimed again)
  stays gone: it is reported, so that the worker stops that run. A claim whose deadline has passed but that nobody
  took back yet is still its run's, and is extended; so is one whose member was lost while the job's own record
  still names its token (see claimStands).

  The worker's own presence is read too: a subscription that died without its connection noticing (a NAT dropping an
  idle connection) lets the fleet take this worker's claims back, and the worker must stop trusting its claims.

  KEYS: the 13 fixed keys
  ARGV: P, leaseMs, presence ('channel' | 'shard' | 'off'), worker, member ("<token>|<fid>")...
  Returns {present (1/0, -1: presence off), the members whose claim was lost...}.
]]
local deadline = now() + tonumber(ARGV[2])
local present = -1
if ARGV[3] ~= 'off' then
  local reply = rcall('PUBSUB', ARGV[3] == 'shard' and 'SHARDNUMSUB' or 'NUMSUB', F .. 'worker:' .. ARGV[4])
  present = tonumber(reply[2]) > 0 and 1 or 0
end
local lost = {present}
for i = 5, #ARGV do
  local member = ARGV[i]
  if rcall('ZADD', K.claims, 'XX', 'CH', deadline, member) == 0 then
    local token = string.sub(member, 1, string.find(member, '|', 1, true) - 1)
    if not claimStands(token, fidOf(member), deadline) then table.insert(lost, member) end
  end
end
return lost
