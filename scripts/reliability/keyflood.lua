-- wrk: every request carries an X-Forwarded-For never sent before, so each one is a new client
-- for a proxy that trusts 127.0.0.1. Request n of thread t uses key c = KEY_BASE + t * 2^22 + n,
-- written as the address (11 + c / 2^24).x.y.z; a thread stops once KEYS_PER_THREAD responses
-- came back (both from the environment, so rounds of wrk never repeat a key; requests still in
-- flight at the stop carry fresh keys too). Prints one JSON line.
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local counter = 0
local quota = tonumber(os.getenv("KEYS_PER_THREAD") or "250000")
local base = tonumber(os.getenv("KEY_BASE") or "0")
s401, s429, sother = 0, 0, 0

function request()
  local c = base + id * 4194304 + counter
  counter = counter + 1
  local address = string.format("%d.%d.%d.%d", 11 + math.floor(c / 16777216), math.floor(c / 65536) % 256,
                                math.floor(c / 256) % 256, c % 256)
  return wrk.format("GET", "/api/v1/device/flood-token", { ["X-Forwarded-For"] = address })
end

function response(status, headers, body)
  if status == 401 then s401 = s401 + 1 elseif status == 429 then s429 = s429 + 1 else sother = sother + 1 end
  if s401 + s429 + sother >= quota then
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("s401"); b = b + t:get("s429"); c = c + t:get("sother")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.2f,"status_401":%d,"status_429":%d,"status_other":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration / 1e6, a, b, c, e.connect, e.read, e.write, e.timeout))
end
