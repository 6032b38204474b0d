# Shared by bench/run.sh, bench/ab.sh and bench/pgo.sh (sourced, not run):
# everything they do the same way — wrk, a work directory cleaned up on exit, keygate
# set up with one key on the embedded store, and the measurement itself.
#
# The machine these run on is shared and noisy in two ways, and the method
# answers both:
#   - two instances of one binary can differ by 10% or more for the whole
#     of their lives (placement, memory layout): every round starts both
#     processes afresh, and the result is the median over ROUNDS rounds;
#   - throughput drifts by 10% or more within seconds (neighbours): within
#     a round the two are measured alternately in short slices, in the
#     order B, A, A, B, … (ABBA), so a drift that is roughly linear over a
#     round weighs on both equally. A round's ratio is A's mean req/s over
#     its slices over B's.
# Both run during the whole round; the one not under load is idle.
# Everything listens on 127.0.0.1, and every wrk run is bounded in time.
# Every binary is built with CGO_ENABLED=0, so the processes compared are
# built the same way (a cgo build of keygate measured the same: 1.002 over
# 13 rounds of ab.sh; the comparison should not depend on that).

SLICE=${SLICE:-1}   # seconds per measured slice
PAIRS=${PAIRS:-4}   # ABBA pairs per round: 2*PAIRS slices each
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-15}

# check_auth NAME VALUE: VALUE must be a route auth mode.
check_auth() {
  case $2 in required|optional|none) ;; *) echo "bench: $1 must be required, optional or none" >&2; exit 2;; esac
}

need_wrk() {
  command -v wrk >/dev/null && return
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  else echo "bench: wrk is not installed" >&2; exit 1; fi
}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# stop PID: stop one process this script started (SIGKILL after 10 s) and
# wait for it; its PID leaves pids, so cleanup never signals a reused one.
stop() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  # A process that must be killed takes its own children with it (nginx's
  # workers would otherwise keep the port).
  if kill -0 "$1" 2>/dev/null; then pkill -KILL -P "$1" 2>/dev/null || true; fi
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local kept=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}

# need_free PORT...: refuse to start when something already listens there:
# the readiness checks would take it for the process just started.
need_free() {
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "bench: port $p on 127.0.0.1 is in use; stop what listens there first" >&2; exit 1
    fi
  done
}

# alive PID WHAT: the process must still run (it answered readiness, but a
# process that could not bind exits, and something else may answer).
alive() { kill -0 "$1" 2>/dev/null || { echo "bench: $2 exited" >&2; exit 1; }; }

# build_common: keygate from this checkout and the upstream, into $work.
build_common() {
  CGO_ENABLED=0 go build -o "$work/keygate" ./cmd/keygate
  CGO_ENABLED=0 go build -o "$work/upstream" ./bench/upstream
}

# keygate_config FILE PORT ADMIN_PORT DATA_DIR AUTH [UPSTREAM_PORT]: a
# keygate config with one route to the upstream (port 18000 by default).
keygate_config() {
  cat > "$1" <<YAML
proxy: {listen: "127.0.0.1:$2"}
admin: {listen: "127.0.0.1:$3"}
store: {driver: embedded, path: "$4"}
keys: {keystore: "$4/keystore"}
routes:
  - name: bench
    match: {path_prefix: /}
    upstream: {targets: ["http://127.0.0.1:${6:-18000}"]}
    auth: $5
log: {level: warn, access_log: false}
YAML
}

# start_upstream [PORT]: the fixed-response upstream (port 18000 by default).
start_upstream() {
  local port=${1:-18000} up= pid
  need_free "$port"
  "$work/upstream" -listen "127.0.0.1:$port" & pid=$!; pids+=($pid)
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && { up=1; break; }; sleep 0.1; done
  [ -n "$up" ] || { echo "bench: the upstream did not start" >&2; exit 1; }
  alive "$pid" upstream
}

# start_keygate BIN CONFIG ADMIN_PORT: serve in the background (pid in
# $started) and wait until ready — up to 30 s: on a loaded machine keygate
# can take longer than 10 s, and runs used to fail with "cannot reach the
# admin API".
start_keygate() {
  need_free "$(sed -n 's/^proxy: {listen: "127.0.0.1:\([0-9]*\)"}$/\1/p' "$2")" "$3"
  "$1" serve --config "$2" 2>"$2.log" & started=$!; pids+=($started)
  local ready=
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$3/readyz" >/dev/null && { ready=1; break; }; sleep 0.1; done
  [ -n "$ready" ] || { echo "bench: keygate did not become ready; its log:" >&2; cat "$2.log" >&2; exit 1; }
  alive "$started" "keygate ($2)"
}

# create_key CONFIG ADMIN_PORT: bootstrap the store of CONFIG and create
# one key (its secret in $key, its id in $key_id) through a keygate that
# is stopped again.
create_key() {
  local admin_key created
  admin_key=$("$work/keygate" bootstrap --config "$1" 2>"$work/bootstrap.log") ||
    { echo "bench: keygate bootstrap failed:" >&2; cat "$work/bootstrap.log" >&2; exit 1; }
  start_keygate "$work/keygate" "$1" "$2"
  created=$(KEYGATE_ADMIN_KEY=$admin_key "$work/keygate" keys create --admin-url "http://127.0.0.1:$2" \
    --name bench --user bench --no-expiry --output json)
  key=$(echo "$created" | sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p')
  key_id=$(echo "$created" | grep -o '"id": *"[^"]*"' | sed -n '1s/.*"\([^"]*\)"$/\1/p')
  stop "$started"
  [ -n "$key" ] && [ -n "$key_id" ] || { echo "bench: could not create a key" >&2; exit 1; }
}

# rate URL [wrk args]: requests per second in one slice. A slice that
# answered anything but 2xx (a wrong key: 401s), had socket errors or
# printed no rate stops the run rather than skewing it.
rate() {
  local out rps
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SLICE}s" "$@")
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  if [ -z "$rps" ] || echo "$out" | grep -q -e 'Non-2xx' -e 'Socket errors'; then
    echo "bench: bad wrk slice for ${*: -1}:" >&2; echo "$out" >&2; exit 1
  fi
  echo "$rps"
}
add() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a+b}'; }
# median: of the arguments; for an even count, the mean of the middle two.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
# quartiles: the 25th and 75th percentiles (nearest rank) of the arguments.
quartiles() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{q1=int((NR+3)/4); q3=int((3*NR+3)/4); print a[q1] " – " a[q3]}'; }

# measure_rounds: ROUNDS rounds of the method above. The caller defines
# start_pair (start A and B and wait until both serve), stop_pair,
# slice_a and slice_b (one slice each, printing req/s: rate) and warm
# (one unmeasured second of each, through rate). Fills a_rps, b_rps and
# ratios.
measure_rounds() {
  a_rps=(); b_rps=(); ratios=()
  local mr_round mr_pair mr_a mr_b mr_x mr_n
  for mr_round in $(seq "$ROUNDS"); do
    start_pair
    warm
    mr_a=0; mr_b=0
    for mr_pair in $(seq "$PAIRS"); do
      # One assignment per slice, so that a failed slice stops the run (set -e).
      mr_x=$(slice_b); mr_b=$(add "$mr_b" "$mr_x")
      mr_x=$(slice_a); mr_a=$(add "$mr_a" "$mr_x")
      mr_x=$(slice_a); mr_a=$(add "$mr_a" "$mr_x")
      mr_x=$(slice_b); mr_b=$(add "$mr_b" "$mr_x")
    done
    stop_pair
    mr_n=$((2 * PAIRS))
    a_rps+=("$(awk -v s="$mr_a" -v n="$mr_n" 'BEGIN{printf "%.0f", s/n}')")
    b_rps+=("$(awk -v s="$mr_b" -v n="$mr_n" 'BEGIN{printf "%.0f", s/n}')")
    ratios+=("$(awk -v a="$mr_a" -v b="$mr_b" 'BEGIN{printf "%.3f", a/b}')")
    echo "round $mr_round: B ${b_rps[-1]} req/s, A ${a_rps[-1]} req/s, ratio A/B ${ratios[-1]}" >&2
  done
}
