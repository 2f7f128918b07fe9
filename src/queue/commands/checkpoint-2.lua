--[[
  Keeps a paid picture until it is delivered, only while its job has not ended: a run that lost its claim leaves
  the picture for the next run of the job, never for a job that is gone. The job is marked (cp), so that a later
  run reads it, and a job taken back goes to the answers to deliver it without the pace.
  KEYS: 1 fq:job:<fid>, 2 checkpoint:<fid>
  ARGV: ttlS, value
  Returns 1 when kept.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
redis.call('HSET', KEYS[1], 'cp', 1)
return 1
