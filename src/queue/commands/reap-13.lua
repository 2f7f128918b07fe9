--- @include "_lib"
--- @include "_promote"
--[[
  Jobs whose lease lapsed (their worker died, froze or lost Redis) go back where they were in their users'
  lines. One that lapsed more than maxStalls times goes first in line with the answer GENERATION_FAILED: the
  worker that claims it tells the user, the one way every failure is told, and ends it. Due retries and
  answers are promoted too.
  ARGV: P, agingMs, maxStalls
  Returns {requeued, stalledOut, promoted}.
]]
local maxStalls = tonumber(ARGV[3])
local t = now()
local moved = promote(t)
local expired = rcall('ZRANGEBYSCORE', K.active, '-inf', t, 'LIMIT', 0, 100)
local requeued, stalledOut = 0, 0
for _, member in ipairs(expired) do
  rcall('ZREM', K.active, member)
  local fid = fidOf(member)
  local job = jobKey(fid)
  local f = rcall('HMGET', job, 'uid', 'order')
  if f[1] then
    release(job, f[1])
    if rcall('HINCRBY', job, 'stalls', 1) > maxStalls then
      rcall('HSET', job, 'answer', 'GENERATION_FAILED', 'stalledOut', 1)
      enqueue(f[1], fid, 0, tonumber(ARGV[2]), t)
      stalledOut = stalledOut + 1
    else
      enqueue(f[1], fid, tonumber(f[2]), tonumber(ARGV[2]), t)
      requeued = requeued + 1
    end
  end
end
if moved + requeued + stalledOut > 0 then rcall('PUBLISH', F .. 'wake', '1') end
return {requeued, stalledOut, moved}
