#!/usr/bin/env bash
# End-to-end load comparison, all on 127.0.0.1 and bounded in time:
# keygate (embedded store, one key, cached; route auth from ROUTE_AUTH)
# versus a bare fasthttp reverse proxy (bench/bareproxy, no auth) in front
# of the same upstream.
#
# The machine this runs on is shared and noisy in two ways, and the design
# answers both:
#   - two instances of one binary can differ by 10% or more for the whole
#     of their lives (placement, memory layout): every round starts both
#     proxies afresh, and the result is the median over ROUNDS rounds;
#   - throughput drifts by 10% or more within seconds (neighbours): within
#     a round the two are measured alternately in short slices, in the
#     order bare, keygate, keygate, bare, … (ABBA), so a drift that is
#     roughly linear over a round weighs on both equally. A round's ratio
#     is keygate's mean req/s over its slices over bare's.
# Both proxies run during the whole round; the one not under load is idle.
# Output: bench/results/latest.txt (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

SLICE=${SLICE:-1}     # seconds per measured slice
PAIRS=${PAIRS:-4}     # ABBA pairs per round: 2*PAIRS slices per proxy
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-15}
# ROUTE_AUTH=none measures keygate without the key check (and so without
# identity headers): what the auth decision costs is the difference.
ROUTE_AUTH=${ROUTE_AUTH:-required}
case $ROUTE_AUTH in required|optional|none) ;; *) echo "bench: ROUTE_AUTH must be required, optional or none" >&2; exit 2;; esac

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  else echo "bench: wrk is not installed" >&2; exit 1; fi
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
# stop PID: stop one process this script started and wait for it.
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$work/keygate" ./cmd/keygate
go build -o "$work/bareproxy" ./bench/bareproxy
go build -o "$work/upstream" ./bench/upstream

cat > "$work/keygate.yaml" <<YAML
proxy: {listen: "127.0.0.1:18080"}
admin: {listen: "127.0.0.1:18090"}
store: {driver: embedded, path: "$work/data"}
keys: {keystore: "$work/data/keystore"}
routes:
  - name: bench
    match: {path_prefix: /}
    upstream: {targets: ["http://127.0.0.1:18000"]}
    auth: $ROUTE_AUTH
log: {level: warn, access_log: false}
YAML

"$work/upstream" -listen 127.0.0.1:18000 & pids+=($!)
admin_key=$("$work/keygate" bootstrap --config "$work/keygate.yaml" 2>/dev/null)

# start_keygate: serve in the background (pid in $kg) and wait until ready.
start_keygate() {
  "$work/keygate" serve --config "$work/keygate.yaml" 2>"$work/keygate.log" & kg=$!; pids+=($kg)
  # Up to 30s: on a loaded machine keygate can take longer than 10s to be
  # ready, and the run used to fail with "cannot reach the admin API".
  local ready=
  for _ in $(seq 300); do curl -fs http://127.0.0.1:18090/readyz >/dev/null && { ready=1; break; }; sleep 0.1; done
  [ -n "$ready" ] || { echo "bench: keygate did not become ready; its log:" >&2; cat "$work/keygate.log" >&2; exit 1; }
}
start_bare() {
  "$work/bareproxy" -listen 127.0.0.1:18081 -upstream 127.0.0.1:18000 & bp=$!; pids+=($bp)
  for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18081/ && return; sleep 0.1; done
  echo "bench: bareproxy did not start" >&2; exit 1
}

start_keygate
key=$(KEYGATE_ADMIN_KEY=$admin_key "$work/keygate" keys create --admin-url http://127.0.0.1:18090 \
  --name bench --user bench --no-expiry --output json | sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p')
[ -n "$key" ] || { echo "bench: could not create a key" >&2; exit 1; }
stop "$kg"

# rate URL [wrk args]: requests per second in one slice.
# A slice that answered anything but 2xx (a wrong key: 401s) or printed no
# rate stops the run rather than skewing it.
rate() {
  local out rps
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SLICE}s" "$@")
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  if [ -z "$rps" ] || echo "$out" | grep -q 'Non-2xx'; then
    echo "bench: bad wrk slice for ${*: -1}:" >&2; echo "$out" >&2; exit 1
  fi
  echo "$rps"
}
add() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a+b}'; }
bare_url=http://127.0.0.1:18081/
kg_url=http://127.0.0.1:18080/
slice_bare() { rate "$bare_url"; }
slice_kg() { rate -H "X-API-Key: $key" "$kg_url"; }

ratios=(); bare_rps=(); kg_rps=()
for r in $(seq "$ROUNDS"); do
  start_bare; start_keygate
  curl -fs -H "X-API-Key: $key" "$kg_url" >/dev/null
  # Warm both (connections, caches) with one unmeasured second each.
  wrk -t"$THREADS" -c"$CONNS" -d1s "$bare_url" >/dev/null
  wrk -t"$THREADS" -c"$CONNS" -d1s -H "X-API-Key: $key" "$kg_url" >/dev/null
  b=0; k=0
  for _ in $(seq "$PAIRS"); do
    # One assignment per slice, so that a failed slice stops the run (set -e).
    x=$(slice_bare); b=$(add "$b" "$x")
    x=$(slice_kg); k=$(add "$k" "$x")
    x=$(slice_kg); k=$(add "$k" "$x")
    x=$(slice_bare); b=$(add "$b" "$x")
  done
  stop "$kg"; stop "$bp"
  n=$((2 * PAIRS))
  bare_rps+=("$(awk -v a="$b" -v n="$n" 'BEGIN{printf "%.0f", a/n}')"); kg_rps+=("$(awk -v a="$k" -v n="$n" 'BEGIN{printf "%.0f", a/n}')")
  ratios+=("$(awk -v a="$k" -v b="$b" 'BEGIN{printf "%.3f", a/b}')")
  echo "round $r: bare ${bare_rps[-1]} req/s, keygate ${kg_rps[-1]} req/s, ratio ${ratios[-1]}" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# quartiles: the 25th and 75th percentiles (nearest rank) of the arguments.
quartiles() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{q1=int((NR+3)/4); q3=int((3*NR+3)/4); print a[q1] " – " a[q3]}'; }
above=$(printf '%s\n' "${ratios[@]}" | awk '$1>=0.95{n++} END{print n+0}')
out=$(cat <<TXT
date: $(date -u +%FT%TZ)  go: $(go version | awk '{print $3}')  cpus: $(nproc)
wrk -t$THREADS -c$CONNS, $ROUNDS rounds (both proxies started afresh each round), each round $PAIRS ABBA pairs of ${SLICE}s slices per proxy
bare fasthttp proxy (no auth), req/s per round: ${bare_rps[*]}  -> median $(median "${bare_rps[@]}")
keygate (auth: $ROUTE_AUTH), req/s per round:   ${kg_rps[*]}  -> median $(median "${kg_rps[@]}")
ratio keygate/bare per round: ${ratios[*]}
median ratio: $(median "${ratios[@]}")  (quartiles $(quartiles "${ratios[@]}"); $above of $ROUNDS rounds at or above 0.95)
TXT
)
mkdir -p bench/results
echo "$out" | tee bench/results/latest.txt
