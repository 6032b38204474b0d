#!/usr/bin/env bash
# End-to-end load comparison, all on 127.0.0.1 and bounded in time:
# keygate (auth on, embedded store, key cached) versus a bare fasthttp
# reverse proxy (bench/bareproxy, no auth) in front of the same upstream,
# interleaved ROUNDS times so both see the same machine noise.
# Output: bench/results/latest.txt (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  else echo "bench: wrk is not installed" >&2; exit 1; fi
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
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
"$work/bareproxy" -listen 127.0.0.1:18081 -upstream 127.0.0.1:18000 & pids+=($!)
admin_key=$("$work/keygate" bootstrap --config "$work/keygate.yaml" 2>/dev/null)
"$work/keygate" serve --config "$work/keygate.yaml" 2>"$work/keygate.log" & pids+=($!)
# Up to 30s: on a loaded machine keygate can take longer than 10s to be
# ready, and the run used to fail with "cannot reach the admin API".
ready=
for _ in $(seq 300); do curl -fs http://127.0.0.1:18090/readyz >/dev/null && { ready=1; break; }; sleep 0.1; done
[ -n "$ready" ] || { echo "bench: keygate did not become ready; its log:" >&2; cat "$work/keygate.log" >&2; exit 1; }
key=$(KEYGATE_ADMIN_KEY=$admin_key "$work/keygate" keys create --admin-url http://127.0.0.1:18090 \
  --name bench --user bench --no-expiry --output json | sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p')
[ -n "$key" ] || { echo "bench: could not create a key" >&2; exit 1; }
curl -fs -H "X-API-Key: $key" http://127.0.0.1:18080/ >/dev/null

rps() { wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$@" | awk '/Requests\/sec/{print $2}'; }
bare=(); kg=()
for r in $(seq "$ROUNDS"); do
  bare+=("$(rps http://127.0.0.1:18081/)")
  kg+=("$(rps -H "X-API-Key: $key" http://127.0.0.1:18080/)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mb=$(median "${bare[@]}"); mk=$(median "${kg[@]}")
out=$(cat <<TXT
date: $(date -u +%FT%TZ)  go: $(go version | awk '{print $3}')  cpus: $(nproc)
wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS interleaved rounds, median req/s
bare fasthttp proxy (no auth): ${bare[*]}  -> median $mb
keygate (auth, cached key):    ${kg[*]}  -> median $mk
ratio keygate/bare: $(awk -v a="$mk" -v b="$mb" 'BEGIN{printf "%.3f", a/b}')
TXT
)
mkdir -p bench/results
echo "$out" | tee bench/results/latest.txt
