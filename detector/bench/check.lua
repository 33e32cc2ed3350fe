-- wrk script for POST /v1/check: every request a new event, spread over
-- 50,000 customers and 20,000 addresses, so the store sees realistic keys.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
  table.insert(threads, thread)
end

-- Optional pacing: `-- DELAY_MS` after the URL makes each connection wait
-- that long between requests, for a steady rate (connections / delay).
local pace = nil

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[1] then pace = tonumber(args[1]) end
end

function delay()
  return pace or 0
end

local steps = {"login", "otp", "id_ocr", "face_match", "liveness", "account_verify"}

function request()
  counter = counter + 1
  local n = counter * 4 + tid
  -- Event time advances a second every four events: a day of traffic passes
  -- in under a minute of load, so idle entities expire during a soak.
  local sec = math.floor(n / 4)
  local body = string.format(
    '{"event_id":"w%d-%d","ts":"%s","step":"%s","result":"%s","customer_id":"c%d","ip":"10.%d.%d.%d","device_id":"d%d","session_id":"s%d","duration_ms":%d}',
    tid, counter, os.date("!%Y-%m-%dT%H:%M:%SZ", 1793581200 + sec),
    steps[(n % 6) + 1], (n % 11 == 0) and "failure" or "success",
    n % 50000, n % 7, math.floor(n / 7) % 250, n % 200, n % 30000, math.floor(n / 6), 2000 + (n * 7919) % 9000)
  return wrk.format(nil, "/v1/check", nil, body)
end
