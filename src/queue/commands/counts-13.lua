--- @include "_lib"
--[[
  What the stats line shows, in O(1): users waiting, jobs running, retries waiting, answers held back, answers
  waiting for a worker, jobs joined to an identical one, answers held back since the start, and Bull's active
  list (every job the fair queue holds, plus any on its way in).
  ARGV: P
]]
return {
  rcall('ZCARD', K.users), rcall('ZCARD', K.claims), rcall('ZCARD', K.retries), rcall('ZCARD', K.held),
  rcall('ZCARD', K.answers), tonumber(rcall('HGET', K.stats, 'joined') or '0'),
  tonumber(rcall('HGET', K.stats, 'heldBack') or '0'), rcall('LLEN', K.active),
}
