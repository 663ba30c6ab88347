-- wrk script for bench/run and bench/go: rotate GETs over a list of paths, and
-- print one machine-readable result line at the end.
--
--   wrk -t1 -c32 -d10s -s bench/rotate.lua http://127.0.0.1:PORT -- PATHS_FILE
--
-- PATHS_FILE holds one absolute request path per line. Each wrk thread starts at
-- a different offset, then every request takes the next path (so each
-- connection walks through the whole mix). Headers given to wrk with -H (bench/run's
-- npm Accept and Accept-Encoding: gzip for packuments) go with every request:
-- wrk.format() adds wrk.headers; without them no Accept-Encoding is sent. No
-- response() hook is defined, so wrk stays on its fast path (a response() hook
-- would cost wrk CPU on every reply).

local next_thread = 0

function setup(thread)
   thread:set("thread_id", next_thread)
   next_thread = next_thread + 1
end

local paths = {}
local i = 0

function init(args)
   local file = args[1]
   if file == nil then
      error("rotate.lua: pass the paths file after --")
   end
   for line in io.lines(file) do
      if #line > 0 then
         paths[#paths + 1] = line
      end
   end
   if #paths == 0 then
      error("rotate.lua: no paths in " .. file)
   end
   -- thread_id is set by setup() in this thread's Lua state.
   i = ((thread_id or 0) * 7) % #paths
end

function request()
   i = i % #paths + 1
   return wrk.format("GET", paths[i])
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d "
         .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.bytes, summary.duration,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
