-- POST a GraphQL body; a header value (cookie or firm id) rotates over a file's lines.
-- args: <header name> <header values file> <body file> [<prefix for the value>]
package.path = package.path .. ";./bench/wrk/?.lua"
local common = require("common")
local values, body, header, prefix
local counter = 0

function init(args)
  header = args[1]
  values = common.lines(args[2])
  local f = io.open(args[3], "r")
  body = f:read("*a")
  f:close()
  prefix = args[4] or ""
  counter = math.random(1, #values)
end

function request()
  counter = counter % #values + 1
  local headers = {["content-type"] = "application/json", ["accept"] = "application/json"}
  headers[header] = prefix .. values[counter]
  return wrk.format("POST", "/graphql", headers, body)
end

setup = common.setup
response = common.response
done = common.done
