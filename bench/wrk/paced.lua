-- graphql.lua at a pace: each connection waits <pace ms> after an answer before its next
-- request, to hold the load at a share of the peak (for p99 at 70 % of peak load).
-- args: as graphql.lua, then <pace ms>
dofile("./bench/wrk/graphql.lua")
local base_init = init
local pace = 0

function init(args)
  base_init(args)
  pace = tonumber(args[5])
end

function delay()
  return pace
end
