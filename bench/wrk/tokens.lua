-- Recipients: each request uses the next fresh link token once (threads take disjoint slices).
-- args: <tokens file> <body template file with TOKEN in it> <slice per thread> <start at, 0-1>
package.path = package.path .. ";./bench/wrk/?.lua"
local common = require("common")
local tokens, template, index, last
setup = common.setup

function init(args)
  tokens = common.lines(args[1])
  local f = io.open(args[2], "r")
  template = f:read("*a")
  f:close()
  local slice = tonumber(args[3])
  -- The warm-up starts late in each slice, so the measured run's tokens are still unused.
  local offset = math.floor(slice * (tonumber(args[4]) or 0))
  index = id * slice + offset
  last = math.min(id * slice + slice, #tokens)
end

function request()
  index = index + 1
  if index > last then index = last end
  local body = string.gsub(template, "TOKEN", tokens[index])
  return wrk.format("POST", "/graphql",
    {["content-type"] = "application/json", ["accept"] = "application/json"}, body)
end

response = common.response
done = common.done
