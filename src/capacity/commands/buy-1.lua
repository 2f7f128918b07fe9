--- @include "../../redis/_time"
--- @include "_bill"
--[[
  A request for a picture is about to be sent for user `uid`: it is bought if today's bill allows it, and its list
  price is reserved until it is settled (SETTLE). Checked and reserved in one step, so that workers buying at the
  same moment never pass a cap together.
  KEYS: 1 bill (see _bill.lua)
  ARGV: uid, priceMicros, userCap (0: none), budgetMicros (0: none)
  Returns {1, day} bought; {0, 'user', day}: the user has had their pictures today; {0, 'budget', day, first}: the
  fleet's budget is spent (first 1: the first refusal today).
]]
local uid, price, cap, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local day = math.floor(now() / 86400000)
local key = billKey(day)
local f = redis.call('HMGET', key, 'spent', 'reserved', 'u:' .. uid)
local spent, reserved, mine = tonumber(f[1] or '0'), tonumber(f[2] or '0'), tonumber(f[3] or '0')
if cap > 0 and mine >= cap then return {0, 'user', day} end
if budget > 0 and spent + reserved + price > budget then
  local first = redis.call('HSETNX', key, 'alerted', 1)
  redis.call('EXPIRE', key, BILL_TTL_S)
  return {0, 'budget', day, first}
end
redis.call('HINCRBY', key, 'reserved', price)
if cap > 0 and redis.call('HINCRBY', key, 'u:' .. uid, 1) == cap then redis.call('HINCRBY', key, 'capped', 1) end
redis.call('EXPIRE', key, BILL_TTL_S)
return {1, day}
