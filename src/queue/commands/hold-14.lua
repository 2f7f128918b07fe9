--- @include "_lib"
--[[
  A failure is about to be told. If a failure was told for the same page and prompt of the same user a moment
  ago (fq:told:<page>, see END and intake), the StoryBang wait page is asking again in a loop: the answer is held back instead,
  2 s after the first repeat, doubling up to 60 s, in fq:held where PROMOTE (or the reaper) brings it back to
  be told by whichever worker claims it. Nothing is held by a worker meanwhile, and nothing is lost if it dies.

  KEYS: the 13 fixed keys, 14 fq:job:<fid>
  ARGV: P, fid, token, code
  Returns the ms the answer is held (0: tell it now; the lease stays), or -1 when the lease is not the caller's.
]]
local fid, token, code = ARGV[2], ARGV[3], ARGV[4]
local job, member = KEYS[14], token .. '|' .. fid
if not rcall('ZSCORE', K.active, member) then return -1 end
local page = rcall('HGET', job, 'page')
if not page or page == '' then return 0 end
local told = tonumber(rcall('GET', F .. 'told:' .. page) or '0')
if told == 0 then return 0 end
local delayMs = math.min(1000 * 2 ^ told, 60000)
rcall('ZREM', K.active, member)
release(job, rcall('HGET', job, 'uid'))
freeSlot(fid)
rcall('HSET', job, 'answer', code)
rcall('ZADD', K.held, now() + delayMs, fid)
rcall('HINCRBY', K.stats, 'heldBack', 1)
return delayMs
