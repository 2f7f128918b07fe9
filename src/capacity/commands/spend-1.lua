--- @include "../../redis/_time"
--- @include "_bill"
--[[
  Today's bill, for the stats line and queue:stats.
  KEYS: 1 bill (see _bill.lua)
  Returns {day, spentMicros, reservedMicros, users at their cap}.
]]
local day = math.floor(now() / 86400000)
local f = redis.call('HMGET', billKey(day), 'spent', 'reserved', 'capped')
return {day, tonumber(f[1] or '0'), tonumber(f[2] or '0'), tonumber(f[3] or '0')}
