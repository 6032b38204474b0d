#!/usr/bin/env bash
# End-to-end load comparison, all on 127.0.0.1 and bounded in time:
# keygate (auth on, embedded store, key cached) versus a bare fasthttp
# reverse proxy (bench/bareproxy, no auth) in front of the same upstream,
# interleaved ROUNDS times so both see the same machine noise. Each round
# starts both proxies afresh: on this kind of shared VM two instances of
# one binary can differ by 10% or more for the whole of their lives
# (placement, memory layout), and a comparison of two single instances
# would measure that luck.
# Output: bench/results/latest.txt (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

DURATION=${DURATION:-3s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-11}

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
    auth: required
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

rps() { wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$@" | awk '/Requests\/sec/{print $2}'; }
# measure bare|keygate: start that proxy, warm it (connections, caches)
# with one unmeasured second, measure into $result, stop it.
measure() {
  if [ "$1" = bare ]; then
    start_bare
    wrk -t"$THREADS" -c"$CONNS" -d1s http://127.0.0.1:18081/ >/dev/null
    result=$(rps http://127.0.0.1:18081/)
    stop "$bp"
  else
    start_keygate
    curl -fs -H "X-API-Key: $key" http://127.0.0.1:18080/ >/dev/null
    wrk -t"$THREADS" -c"$CONNS" -d1s -H "X-API-Key: $key" http://127.0.0.1:18080/ >/dev/null
    result=$(rps -H "X-API-Key: $key" http://127.0.0.1:18080/)
    stop "$kg"
  fi
}
# Rounds alternate which proxy goes first, so neither always follows the
# other's aftermath; each round's ratio compares two neighbours in time.
bare=(); kgs=(); ratios=()
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then measure bare; b=$result; measure keygate; k=$result
  else measure keygate; k=$result; measure bare; b=$result; fi
  bare+=("$b"); kgs+=("$k"); ratios+=("$(awk -v a="$k" -v b="$b" 'BEGIN{printf "%.3f", a/b}')")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mb=$(median "${bare[@]}"); mk=$(median "${kgs[@]}")
out=$(cat <<TXT
date: $(date -u +%FT%TZ)  go: $(go version | awk '{print $3}')  cpus: $(nproc)
wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS interleaved rounds, both proxies started afresh each round, req/s
bare fasthttp proxy (no auth): ${bare[*]}  -> median $mb
keygate (auth, cached key):    ${kgs[*]}  -> median $mk
per-round ratios keygate/bare: ${ratios[*]}  -> median $(median "${ratios[@]}")
ratio of the medians keygate/bare: $(awk -v a="$mk" -v b="$mb" 'BEGIN{printf "%.3f", a/b}')
TXT
)
mkdir -p bench/results
echo "$out" | tee bench/results/latest.txt
