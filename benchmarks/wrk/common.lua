-- Shared by the benchmark's wrk scripts: thread bookkeeping, id lists, a JSON summary line.
-- Configuration comes from environment variables set by benchmarks/run.py.

local M = {}
M.threads = {}

function M.setup(thread)
   thread:set("tid", #M.threads + 1)
   table.insert(M.threads, thread)
end

function M.read_ids(path)
   local ids = {}
   for line in io.lines(path) do
      if #line > 0 then ids[#ids + 1] = line end
   end
   assert(#ids > 0, "no ids in " .. path)
   return ids
end

function M.seed(tid)
   math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") * 1000 + tid)
end

-- Prints one line "BENCHJSON {...}" that run.py parses. Status counts come from each
-- thread's `statuses` table when the script counts them (POST scripts do; GET scripts
-- don't, to keep wrk cheap, and rely on summary.errors.status = responses >= 400).
function M.done(summary, latency, requests)
   local statuses = {}
   for _, t in ipairs(M.threads) do
      local s = t:get("statuses")
      if s then
         for code, n in pairs(s) do statuses[code] = (statuses[code] or 0) + n end
      end
   end
   local parts = {}
   for code, n in pairs(statuses) do parts[#parts + 1] = string.format('"%d":%d', code, n) end
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"statuses":{%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, table.concat(parts, ",")))
end

return M
