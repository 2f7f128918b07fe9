--- @include "../../redis/_time"
--- @include "_pace"
--[[
  Reserves the next slot of the image API for the whole fleet (GCRA: one request every interval x scale, no
  bursts), on Redis' clock so workers with skewed clocks share one pace. Every slot handed out eases a slow-down.
  KEYS: 1 fq:pace (see _pace.lua)
  ARGV: intervalMs, deadlineInMs (-1: none), idleTtlMs, fid (the job's; '': none): the slot a claim promised to
        that job is the one reserved, at its own time
  Returns the ms to wait for the slot, or -1 when it would come after the deadline (nothing is reserved then).
]]
local interval, deadlineIn, idleTtl, fid = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] or ''
local t = now()
local pace = redis.call('HMGET', KEYS[1], 'tat', 'scale', 'promisedTo', 'promised', 'promisedAt')
local tat, scale = tonumber(pace[1] or '0'), tonumber(pace[2] or '1')
local at = math.max(takePromise(KEYS[1], t, fid, pace[3], pace[4], pace[5]) or t, tat)
if deadlineIn >= 0 and at - t > deadlineIn then return -1 end
redis.call('HSET', KEYS[1], 'tat', tostring(at + interval * scale), 'scale', tostring(math.max(1, scale * 0.97)))
redis.call('PEXPIRE', KEYS[1], idleTtl)
return math.max(0, math.ceil(at - t))
