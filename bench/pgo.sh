#!/usr/bin/env bash
# Regenerates cmd/keygate/default.pgo, the CPU profile the Go compiler uses
# to optimize keygate (profile-guided optimization: `go build` picks it up
# by itself), and bench/bareproxy/default.pgo, the same for the benchmark's
# baseline, so that bench/run.sh compares two binaries built the same way.
# Each profile is of its program's hot path as bench/run.sh drives it:
# requests through the proxy to a fixed-response upstream, all on
# 127.0.0.1, bounded in time. Rerun it when the hot path changes much.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
SECONDS_PROFILED=${SECONDS_PROFILED:-20}

# wrk, $work (removed on exit) and pids (stopped on exit).
. bench/lib.sh
need_wrk

# The profiled build is itself built without a profile, so the new one does
# not inherit the old one's choices.
CGO_ENABLED=0 go build -pgo=off -tags pgoprofile -o "$work/keygate" ./cmd/keygate
CGO_ENABLED=0 go build -o "$work/upstream" ./bench/upstream
CGO_ENABLED=0 go build -pgo=off -o "$work/bareproxy" ./bench/bareproxy

keygate_config "$work/keygate.yaml" 18280 18290 "$work/data" required 18200
start_upstream 18200
create_key "$work/keygate.yaml" 18290

# Profile a fresh process under load from its start (rate: the load must be
# answered with 2xx, or the profile would be of refusals).
PGO_PROFILE="$work/cpu.pprof" PGO_SECONDS=$SECONDS_PROFILED \
  start_keygate "$work/keygate" "$work/keygate.yaml" 18290
echo "keygate: $(SLICE=$((SECONDS_PROFILED + 2)) rate -H "X-API-Key: $key" http://127.0.0.1:18280/) req/s"
sleep 1
[ -s "$work/cpu.pprof" ] || { echo "pgo: no profile was written" >&2; exit 1; }
cp "$work/cpu.pprof" cmd/keygate/default.pgo
echo "pgo: wrote cmd/keygate/default.pgo ($(wc -c < cmd/keygate/default.pgo) bytes)"

need_free 18281
"$work/bareproxy" -listen 127.0.0.1:18281 -upstream 127.0.0.1:18200 \
  -cpuprofile "$work/bare.pprof" -profile-seconds "$SECONDS_PROFILED" & pids+=($!)
up=
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18281/ && { up=1; break; }; sleep 0.1; done
[ -n "$up" ] || { echo "pgo: bareproxy did not start" >&2; exit 1; }
echo "bareproxy: $(SLICE=$((SECONDS_PROFILED + 2)) rate http://127.0.0.1:18281/) req/s"
sleep 1
[ -s "$work/bare.pprof" ] || { echo "pgo: no bareproxy profile was written" >&2; exit 1; }
cp "$work/bare.pprof" bench/bareproxy/default.pgo
echo "pgo: wrote bench/bareproxy/default.pgo ($(wc -c < bench/bareproxy/default.pgo) bytes)"
