--- @include "_lib"
--[[
  A reply lost with the connection: the client sends the command again once it reconnects, and a claim it had made
  (CLAIM, or END's claim of the next job) stays behind under a token the worker never learned about, running
  nothing. After its connection dropped, a worker gives back each claim of its own that it does not know: where it
  was, without counting a stall.
  ARGV: P, agingMs, worker, n, n members the worker runs ("<token>|<fid>"), then the tokens of its claims under way
  (their replies on their way: whatever they claimed is theirs)
  Returns how many claims were given back.
]]
local agingMs, worker, n = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local known, pending = {}, {}
for i = 5, 4 + n do known[ARGV[i]] = true end
for i = 5 + n, #ARGV do pending[ARGV[i]] = true end
local t = now()
local given = 0
for _, member in ipairs(rcall('ZRANGE', K.claims, 0, -1)) do
  local token = string.sub(member, 1, string.find(member, '|', 1, true) - 1)
  if workerOf(member) == worker and not known[member] and not pending[token] and requeue(member, t, agingMs, -1) then given = given + 1 end
end
publishWake()
return given
