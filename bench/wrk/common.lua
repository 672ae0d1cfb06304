-- Shared by the scenarios: read one value per line from a file, count GraphQL errors, and
-- print the summary as one JSON line for bench/run.py.
local M = {}

function M.lines(path)
  local items = {}
  for line in io.lines(path) do
    if #line > 0 then items[#items + 1] = line end
  end
  return items
end

M.threads = {}

function M.setup(thread)
  thread:set("id", #M.threads)
  M.threads[#M.threads + 1] = thread
end

errors = 0

function M.response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    errors = errors + 1
  end
end

function M.done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local graphql_errors = 0
  for _, thread in ipairs(M.threads) do
    graphql_errors = graphql_errors + (thread:get("errors") or 0)
  end
  io.write(string.format(
    '{"requests":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"socket_errors":%d,"non_2xx":%d,' ..
    '"graphql_errors":%d}\n',
    summary.requests, summary.requests / seconds, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, graphql_errors))
end

return M
