--[[
  Extends the leases of the jobs a worker runs, fenced by their tokens. A lease that is gone (it lapsed and was
  reaped, and maybe claimed again) stays gone: its member is reported so the worker stops that run.

  KEYS: 1 fq:active
  ARGV: P, leaseMs, member ("<token>|<fid>")...
  Returns the members whose lease was lost.
]]
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], deadline, ARGV[i])
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
