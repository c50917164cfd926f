-- POST workloads with a fresh random body per request.
--   BENCH_MODE=uniform  p2p exchange between two random distinct members of BENCH_IDS
--   BENCH_MODE=hot      every exchange touches the organisation BENCH_ORG: 50/50
--                       p2o (member credited) / o2p (member debited), random member
--   BENCH_MODE=hordak   {"from","to","amount"} between two random distinct hordak accounts
-- BENCH_TOKEN: bearer token; BENCH_IDEMPOTENCY=1 adds a unique Idempotency-Key.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local mode = os.getenv("BENCH_MODE")
local path = os.getenv("BENCH_PATH")
local token = os.getenv("BENCH_TOKEN")
local org = os.getenv("BENCH_ORG")
local idem = os.getenv("BENCH_IDEMPOTENCY") == "1"
local categories = { "transport", "companionship", "shopping-errands", "home-garden",
   "diy-repairs", "admin-it" }

setup = common.setup
done = common.done

function init(args)
   ids = common.read_ids(os.getenv("BENCH_IDS"))
   common.seed(tid)
   statuses = {}
   counter = 0
   run_tag = string.format("%d-%d-%d", os.time(), tid, math.random(1, 1e9))
   headers = { ["Content-Type"] = "application/json" }
   if token and #token > 0 then headers["Authorization"] = "Bearer " .. token end
end

local function two()
   local a = math.random(#ids)
   local b = math.random(#ids - 1)
   if b >= a then b = b + 1 end
   return ids[a], ids[b]
end

function request()
   local body
   local minutes = 15 * math.random(1, 4)
   if mode == "uniform" then
      local a, b = two()
      body = string.format(
         '{"provider":{"member_id":"%s"},"recipient":{"member_id":"%s"},' ..
         '"minutes":%d,"category":"%s"}', a, b, minutes, categories[math.random(#categories)])
   elseif mode == "hot" then
      local m = ids[math.random(#ids)]
      local p, r
      if math.random(2) == 1 then
         p, r = '{"member_id":"' .. m .. '"}', '{"organisation_id":"' .. org .. '"}'
      else
         p, r = '{"organisation_id":"' .. org .. '"}', '{"member_id":"' .. m .. '"}'
      end
      body = string.format('{"provider":%s,"recipient":%s,"minutes":%d,"category":"%s"}',
         p, r, minutes, categories[math.random(#categories)])
   else
      local a, b = two()
      body = string.format('{"from":%s,"to":%s,"amount":%d}', a, b, minutes)
   end
   if idem then
      counter = counter + 1
      headers["Idempotency-Key"] = run_tag .. "-" .. counter
   end
   return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
   statuses[status] = (statuses[status] or 0) + 1
end
