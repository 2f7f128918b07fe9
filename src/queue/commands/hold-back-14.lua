--- @include "_lib"
--[[
  A failure is about to be told. If a failure was told for the same ask (user, page and prompt) a moment ago
  (fq:told:<ask>, counted by END), the StoryBang wait page is asking again in a loop: the answer is held back
  instead, 2 s after the first repeat, doubling up to 60 s, in fq:held, where PROMOTE (or the reaper) moves it to
  the answers, to be told by whichever worker claims it. Nothing is held by a worker meanwhile, and nothing is lost
  if it dies. The jobs that joined it do not wait with it: they run on their own.
  Told now, the claim's deadline is renewed: the caller may tell at once.

  KEYS: the 13 fixed keys, 14 fq:job:<fid>
  ARGV: P, fid, token, code, leaseMs, agingMs
  Returns {0} (tell it now), {2, ms it is held back}, or {-1} when the claim is not the caller's.
]]
local fid, token, code, leaseMs, agingMs = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local job, member = KEYS[14], claimMember(token, fid)
local t = now()
if not claimStands(token, fid) then return {-1} end
local f = rcall('HMGET', job, 'ask', 'uid')
local told = f[1] and f[1] ~= '' and tonumber(rcall('GET', toldKey(f[1])) or '0') or 0
if told == 0 then
  rcall('ZADD', K.claims, t + leaseMs, member)
  return {0}
end
local delayMs = math.min(1000 * 2 ^ told, 60000)
rcall('ZREM', K.claims, member)
releaseRunning(job, f[2])
freeSlot(K.pace, fid)
rcall('HDEL', job, 'claim')
rcall('HSET', job, 'answer', code, 'heldMs', delayMs, 'at', 'held')
rcall('ZADD', K.held, t + delayMs, fid)
rcall('HINCRBY', K.stats, 'heldBack', 1)
releaseJoined(fid, agingMs, t)
releaseAsk(f[1], fid)
publishWake()
return {2, delayMs}
