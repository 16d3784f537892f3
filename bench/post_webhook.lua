-- POST {prefix}/webhooks/bench with a new, validly signed delivery per request.
-- The deliveries come from bench/webhooks.py (BENCH_WEBHOOKS: fixed-width lines).
local width = 128
local body = '{"type": "bench.event", "amount": 42}'
local file, count, index

function init(args)
  file = assert(io.open(os.getenv("BENCH_WEBHOOKS"), "r"))
  count = math.floor(file:seek("end") / width)
  index = (os.time() * 2000) % count
end

function request()
  file:seek("set", index * width)
  local id, ts, sig = file:read(width):match("^(%S+) (%S+) (%S+)")
  index = (index + 1) % count
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["webhook-id"] = id,
    ["webhook-timestamp"] = ts,
    ["webhook-signature"] = sig,
  }, body)
end
