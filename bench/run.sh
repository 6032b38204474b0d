#!/usr/bin/env bash
# End-to-end load comparison: keygate (A: embedded store, one key, cached;
# route auth from ROUTE_AUTH) versus a bare fasthttp reverse proxy (B:
# bench/bareproxy, no auth) in front of the same upstream, with the method
# described in bench/lib.sh. ROUTE_AUTH=none measures keygate without the
# key check, for comparison.
# Output: bench/results/latest.txt (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
. bench/lib.sh

ROUTE_AUTH=${ROUTE_AUTH:-required}
check_auth ROUTE_AUTH "$ROUTE_AUTH"
need_wrk

build_common
CGO_ENABLED=0 go build -o "$work/bareproxy" ./bench/bareproxy
keygate_config "$work/keygate.yaml" 18080 18090 "$work/data" "$ROUTE_AUTH"
start_upstream
create_key "$work/keygate.yaml" 18090

a_url=http://127.0.0.1:18080/
b_url=http://127.0.0.1:18081/
start_pair() {
  need_free 18081
  "$work/bareproxy" -listen 127.0.0.1:18081 -upstream 127.0.0.1:18000 & bp=$!; pids+=($bp)
  local up=
  for _ in $(seq 100); do curl -fs -o /dev/null "$b_url" && { up=1; break; }; sleep 0.1; done
  [ -n "$up" ] || { echo "bench: bareproxy did not start" >&2; exit 1; }
  alive "$bp" bareproxy
  start_keygate "$work/keygate" "$work/keygate.yaml" 18090; kg=$started
  curl -fs -H "X-API-Key: $key" "$a_url" >/dev/null
}
stop_pair() { stop "$kg"; stop "$bp"; }
slice_a() { rate -H "X-API-Key: $key" "$a_url"; }
slice_b() { rate "$b_url"; }
warm() {
  SLICE=1 rate "$b_url" >/dev/null
  SLICE=1 rate -H "X-API-Key: $key" "$a_url" >/dev/null
}
measure_rounds

above=$(printf '%s\n' "${ratios[@]}" | awk '$1>=0.95{n++} END{print n+0}')
out=$(cat <<TXT
date: $(date -u +%FT%TZ)  go: $(go version | awk '{print $3}')  cpus: $(nproc)
wrk -t$THREADS -c$CONNS, $ROUNDS rounds (both proxies started afresh each round), each round $PAIRS ABBA pairs of ${SLICE}s slices per proxy
bare fasthttp proxy (no auth), req/s per round: ${b_rps[*]}  -> median $(median "${b_rps[@]}")
keygate (auth: $ROUTE_AUTH), req/s per round:   ${a_rps[*]}  -> median $(median "${a_rps[@]}")
ratio keygate/bare per round: ${ratios[*]}
median ratio: $(median "${ratios[@]}")  (quartiles $(quartiles "${ratios[@]}"); $above of $ROUNDS rounds at or above 0.95)
TXT
)
mkdir -p bench/results
echo "$out" | tee bench/results/latest.txt
