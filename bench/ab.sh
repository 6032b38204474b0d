#!/usr/bin/env bash
# A/B load comparison of two keygates, with the method described in
# bench/lib.sh: A is keygate built from this checkout, B is another keygate
# binary (a build of another commit, or of a change being weighed) or the
# same build with another route auth.
#   ./bench/ab.sh /path/to/keygate-b        # A/B of two builds
#   B_AUTH=none ./bench/ab.sh               # A with a key check, B without
# The ratio printed is A over B. Each gets its own copy of one embedded
# store, so both serve the same key. Output on stdout only.
set -euo pipefail
# B's path as given, from where the script was started.
B_BIN=${1:+$(realpath -e -- "$1" 2>/dev/null || echo "$1")}
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
. bench/lib.sh

ROUTE_AUTH=${ROUTE_AUTH:-required}
B_AUTH=${B_AUTH:-$ROUTE_AUTH}
check_auth ROUTE_AUTH "$ROUTE_AUTH"
check_auth B_AUTH "$B_AUTH"
[ -z "$B_BIN" ] || [ -x "$B_BIN" ] || { echo "ab: $B_BIN is not an executable" >&2; exit 2; }
need_wrk

build_common
if [ -n "$B_BIN" ]; then cp "$B_BIN" "$work/keygate_b"; else cp "$work/keygate" "$work/keygate_b"; fi
keygate_config "$work/a.yaml" 18080 18090 "$work/data" "$ROUTE_AUTH"
keygate_config "$work/b.yaml" 18081 18091 "$work/data_b" "$B_AUTH"
start_upstream
create_key "$work/a.yaml" 18090
cp -r "$work/data" "$work/data_b"

a_url=http://127.0.0.1:18080/
b_url=http://127.0.0.1:18081/
start_pair() {
  start_keygate "$work/keygate_b" "$work/b.yaml" 18091; kb=$started
  start_keygate "$work/keygate" "$work/a.yaml" 18090; ka=$started
}
stop_pair() { stop "$ka"; stop "$kb"; }
slice_a() { rate -H "X-API-Key: $key" "$a_url"; }
slice_b() { rate -H "X-API-Key: $key" "$b_url"; }
warm() {
  SLICE=1 rate -H "X-API-Key: $key" "$b_url" >/dev/null
  SLICE=1 rate -H "X-API-Key: $key" "$a_url" >/dev/null
}
measure_rounds

cat <<TXT
date: $(date -u +%FT%TZ)  go: $(go version | awk '{print $3}')  cpus: $(nproc)  A: $(git rev-parse --short HEAD)$([ -z "$(git status --porcelain)" ] || echo +changes) auth $ROUTE_AUTH  B: ${B_BIN:-same build} auth $B_AUTH
wrk -t$THREADS -c$CONNS, $ROUNDS rounds (both started afresh each round), each round $PAIRS ABBA pairs of ${SLICE}s slices each
B req/s per round: ${b_rps[*]}  -> median $(median "${b_rps[@]}")
A req/s per round: ${a_rps[*]}  -> median $(median "${a_rps[@]}")
ratio A/B per round: ${ratios[*]}
median ratio A/B: $(median "${ratios[@]}")  (quartiles $(quartiles "${ratios[@]}"))
TXT
