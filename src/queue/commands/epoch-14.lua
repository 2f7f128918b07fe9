--- @include "_lib"
--[[
  The fleet's epoch, as a worker learns it when it starts. An epoch lasts while workers of this kind keep Bull's
  locks of the jobs the fair queue has: each sweep round marks fq:kept for lockMs. When no mark is left, the locks
  may have lapsed meanwhile (the fleet was gone, or Redis silent, for a lock's life), and a plain Bull worker may
  have run some of those jobs (a roll-back): a new epoch begins, and CLAIM checks Bull's lock of every job taken in
  before it.
  KEYS: the 13 fixed keys, 14 fq:kept
  ARGV: P, lockMs
  Returns the epoch.
]]
if rcall('EXISTS', KEYS[14]) == 1 then return tonumber(rcall('HGET', K.stats, 'epoch') or '0') end
rcall('SET', KEYS[14], 1, 'PX', tonumber(ARGV[2]))
return rcall('HINCRBY', K.stats, 'epoch', 1)
