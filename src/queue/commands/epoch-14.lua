--- @include "_lib"
--[[
  The fleet's epoch, as a worker learns it when it starts. An epoch lasts while workers of this kind keep Bull's
  locks of the jobs the fair queue has: each sweep round marks fq:kept for lockMs. When no mark is left, the locks
  may have lapsed meanwhile (the fleet was gone, or Redis silent, for a lock's life), and a plain Bull worker may
  have run some of those jobs (a roll-back): a new epoch begins, and CLAIM checks Bull's lock of every job taken in
  before it.
  An epoch is named by the Redis time it began, so a new one is always later than the last, even when fq:stats was
  lost (an operator's DEL): then, and when no mark is left, a new epoch begins.
  KEYS: the 13 fixed keys, 14 fq:kept
  ARGV: P, lockMs, known (the epoch the caller knows; 0 at start)
  Returns the epoch.
]]
local known = tonumber(ARGV[3])
if rcall('EXISTS', KEYS[14]) == 1 and rcall('HEXISTS', K.stats, 'epoch') == 1 then return epochOf(known) end
rcall('SET', KEYS[14], 1, 'PX', tonumber(ARGV[2]))
return beginEpoch(now(), known)
