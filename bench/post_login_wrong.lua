-- wrk -s bench/post_login_wrong.lua: a login storm. Every request is a wrong password for
-- the bench's member (bench/database.py's EMAIL), so past the first few of each minute
-- the answer is 429. In `done` it prints one line per status seen ("status 429: 12345").
wrk.method = "POST"
wrk.body = '{"email": "bench@example.com", "password": "not-the-password"}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         io.write(string.format("status %d: %d\n", status, count))
      end
   end
end
