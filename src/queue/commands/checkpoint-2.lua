--[[
  Keeps a paid-for image until it is delivered, only while its job has not ended: a runner that lost its lease
  leaves the image for the new holder, never for a job that is gone.
  KEYS: 1 fq:job:<fid>, 2 checkpoint:<fid>
  ARGV: ttlS, value
  Returns 1 when kept.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
return 1
