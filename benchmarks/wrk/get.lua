-- GET a random member's balance: BENCH_PATH has "{id}" replaced per request by an id
-- from BENCH_IDS. The bare handler is driven by the same script and ids.
package.path = os.getenv("BENCH_WRK_DIR") .. "/?.lua;" .. package.path
local common = require("common")

local template = os.getenv("BENCH_PATH")
local token = os.getenv("BENCH_TOKEN")

setup = common.setup
done = common.done

function init(args)
   ids = common.read_ids(os.getenv("BENCH_IDS"))
   common.seed(tid)
   headers = {}
   if token and #token > 0 then headers["Authorization"] = "Bearer " .. token end
end

function request()
   local p = template:gsub("{id}", ids[math.random(#ids)])
   return wrk.format("GET", p, headers)
end
