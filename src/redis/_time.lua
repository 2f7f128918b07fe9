--[[
  Redis' own clock in milliseconds: every worker of the fleet reads the same one, whatever its host's clock says.
]]
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
