-- wrk script for bench_serve_wrk.py: POST /ingest, rotating pre-built profile bodies over many series.
-- Request n of thread t (of T) is global request g = n * T + t: series g % SERIES gets point g // SERIES,
-- so every request of a series carries the next profile time (a new point, never a repeat).
-- Bodies are read once per thread from BODY_DIR/body_NNNN.bin (each with its own time_nanos).
local body_dir = os.getenv("BODY_DIR")
local count = tonumber(os.getenv("BODY_COUNT"))
local series = tonumber(os.getenv("SERIES"))
local threads = tonumber(os.getenv("THREADS"))
local bodies = {}
local n = 0
local me = 0
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  me = tonumber(wrk.thread:get("id")) or 0
  for i = 0, count - 1 do
    local f = assert(io.open(string.format("%s/body_%04d.bin", body_dir, i), "rb"))
    bodies[i] = f:read("*a")
    f:close()
  end
end

function request()
  local g = n * threads + me
  n = n + 1
  local s = g % series
  local point = math.floor(g / series) % count
  local path = string.format("/ingest?name=svc-%d%%7Binstance%%3Di%%7D&format=pprof", s)
  return wrk.format("POST", path, {["Content-Type"] = "application/octet-stream"}, bodies[point])
end
