--- @include "_bill"
--[[
  Settles a purchase made by BUY on `day`: its reservation is replaced by what the picture cost, or, when no
  picture came back (the request failed, was refused, or waited out a rate limit), given back to the user's and the
  fleet's allowance.
  KEYS: 1 bill (see _bill.lua)
  ARGV: day, uid, priceMicros, costMicros (-1: nothing was bought), userCap (0: none)
]]
local key = billKey(ARGV[1])
local uid, price, cost, cap = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('HINCRBY', key, 'reserved', -price)
if cost >= 0 then
  redis.call('HINCRBY', key, 'spent', cost)
elseif cap > 0 and redis.call('HINCRBY', key, 'u:' .. uid, -1) == cap - 1 then
  redis.call('HINCRBY', key, 'capped', -1)
end
return 1
