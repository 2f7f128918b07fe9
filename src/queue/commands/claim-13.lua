--- @include "_lib"
--- @include "_claim"
--[[
  Claims the next job, fairly: the user with the fewest jobs waiting (ties: the one waiting longest; every
  agingMs of waiting counts as one job fewer), skipping users at USER_CONCURRENCY, gives up the first job of
  their line. The claim is a lease with a fencing token: "<token>|<fid>" in fq:active. Only the holder of that
  member may end, renew, retry or hand back the job (END, RENEW).

  With the pace on, nothing is claimed until the image API's next slot is free: a job claimed earlier would only
  wait, and the next user in line should have that slot. A claimed job holds the slot for holdMs (or until it
  ends without asking the API) so other workers do not claim for the same slot.

  ARGV: P, leaseMs, userCap (0: none), paced (1/0), holdMs, agingMs
  Returns {1, fid, token, fields} or {0, ms until the next slot, or -1: nothing to claim (wait to be woken)}.
]]
return claimNext(now(), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', tonumber(ARGV[5]), tonumber(ARGV[6]))
