-- wrk -s bench/post_order.lua: every request orders one unit of a random catalogue item.
-- The item ids come from bench/orders.py (BENCH_ORDER_ITEMS: one id a line).
local ids = {}

function init(args)
  for line in io.lines(os.getenv("BENCH_ORDER_ITEMS")) do
    ids[#ids + 1] = line
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  -- wrk.format uses only the headers it is given: keep the command line's (Authorization).
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  local body = '{"lines": [{"item_id": "' .. ids[math.random(#ids)] .. '", "quantity": 1}]}'
  return wrk.format("POST", nil, headers, body)
end
