-- graphql.lua at a pace: each connection pauses after an answer before its next request, for a
-- time drawn from an exponential distribution with the given mean (independent users, whose
-- requests do not fall into lockstep), to hold the load at a share of the peak.
-- args: as graphql.lua, then <mean pause ms>
dofile("./bench/wrk/graphql.lua")
local base_init = init
local pause = 0

function init(args)
  base_init(args)
  pause = tonumber(args[5])
  math.randomseed(os.time() * 7919 + (id or 0))
end

function delay()
  return math.floor(-pause * math.log(1 - math.random()))
end
