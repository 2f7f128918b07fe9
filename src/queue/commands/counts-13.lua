--- @include "_lib"
--[[
  What the stats line shows, in O(1) and one round trip: Bull's own counts (as getJobCounts gives them: waiting,
  active, completed, failed, delayed, paused), then the fair queue's: users waiting, jobs running, retries
  waiting, answers held back, answers waiting for a worker, jobs joined to an identical one, answers held back
  since the start.
  ARGV: P
]]
return {
  rcall('LLEN', K.wait), rcall('LLEN', K.active), rcall('ZCARD', K.completed), rcall('ZCARD', K.failed),
  rcall('ZCARD', P .. 'delayed'), rcall('LLEN', P .. 'paused'),
  rcall('ZCARD', K.users), rcall('ZCARD', K.claims), rcall('ZCARD', K.retries), rcall('ZCARD', K.held),
  rcall('ZCARD', K.answers), tonumber(rcall('HGET', K.stats, 'joined') or '0'),
  tonumber(rcall('HGET', K.stats, 'heldBack') or '0'),
}
