-- wrk script for POST /v1/events: NDJSON batches of 1,000 new events.
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-ndjson"
end

function request()
  local lines = {}
  for i = 1, 1000 do
    counter = counter + 1
    local n = counter * 4 + tid
    local sec = math.floor(n / 500)
    lines[i] = string.format(
      '{"event_id":"b%d-%d","ts":"%s","step":"login","result":"success","customer_id":"c%d","ip":"10.%d.%d.%d","device_id":"d%d"}',
      tid, counter, os.date("!%Y-%m-%dT%H:%M:%SZ", 1793581200 + sec), n % 50000, n % 7, math.floor(n / 7) % 250, n % 200, n % 30000)
  end
  return wrk.format(nil, "/v1/events", nil, table.concat(lines, "\n"))
end
