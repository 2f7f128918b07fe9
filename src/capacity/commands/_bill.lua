--- @builds-keys
--[[
  The bill of one UTC day, shared by every worker of the fleet: HASH <KEYS[1]>:<day> (day = whole days since the
  epoch on Redis' clock), kept two days.
    spent     micro-USD paid for pictures that came back (xAI's usage.cost_in_usd_ticks, else the list price)
    reserved  micro-USD of the requests out now, each at its list price until it is settled
    u:<Id>    pictures bought (or being bought) for that user today, kept only under USER_DAILY_IMAGES
    capped    users who reached USER_DAILY_IMAGES today
    alerted   set by the first request the budget refused today: that job's end carries alert "budget"
]]
local function billKey(day) return KEYS[1] .. ':' .. day end
local BILL_TTL_S = 172800
