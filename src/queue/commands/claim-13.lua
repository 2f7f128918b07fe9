--- @include "_lib"
--- @include "_claim"
--[[
  Claims the next job. Work that needs no image request comes first, whatever the pace (fq:answers: bad data and
  bad tokens found at intake, answers held back, pictures already paid for). Then, fairly: the user with the
  fewest jobs waiting (ties: the one waiting longest; every agingMs of waiting counts as one job fewer), skipping
  users at USER_CONCURRENCY, gives up the first job of their line. With the pace on, such a job is claimed only
  once the image API's next slot is free (a job claimed earlier would only wait, and the next user in line should
  have that slot), and the slot is promised to it for promiseMs.

  The claim is the member "<token>|<fid>" of fq:claims, scored with its deadline. The worker makes the token
  ("<worker>.<n>": a random worker id, so no token ever repeats, also after Redis lost writes); only the run with
  that member may renew, end, retry, hold back or hand back the job.

  ARGV: P, token, leaseMs, userCap (0: none), paced (1/0), promiseMs, agingMs, lockMs, answers (1/0: look at
        fq:answers), epoch (the fleet's, as the worker knows it)
  Returns {1, fid, lane, fields, more} or {0, ms until the next slot, or -1: nothing to claim (wait to be woken)}.
]]
return claimNext(now(), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6]),
  tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9] == '1', tonumber(ARGV[10]))
