#!/usr/bin/env bash
# make run: a fresh demo every time. Starts the demo echo upstream and
# keygate on the embedded store (data in $RUN_DIR, wiped at start), creates
# a demo key, prints the bootstrap admin key and curls that work, then keeps
# keygate in the foreground until Ctrl-C.
set -euo pipefail
: "${RUN_DIR:=.run}" "${PROXY_PORT:=8080}" "${ADMIN_PORT:=9090}" "${UPSTREAM_PORT:=3000}" "${BIN:=bin/keygate}"

rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

export KEYGATE_STORE_PATH="$RUN_DIR/data" KEYGATE_KEYS_KEYSTORE="$RUN_DIR/data/keystore"
export KEYGATE_PROXY_LISTEN=":$PROXY_PORT" KEYGATE_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT"
export KEYGATE_LOG_FORMAT=text

"$BIN" demo-upstream --listen "127.0.0.1:$UPSTREAM_PORT" & pids+=($!)

# serve creates the first admin key itself and prints it once on stderr;
# the demo seeds it instead so it can also create a demo key for you.
admin_key=$("$BIN" bootstrap)
"$BIN" serve --upstream "http://127.0.0.1:$UPSTREAM_PORT" 2>"$RUN_DIR/keygate.log" & kg=$!; pids+=($kg)

for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$kg" 2>/dev/null || { cat "$RUN_DIR/keygate.log" >&2; exit 1; }
  sleep 0.1
done

demo_key=$(KEYGATE_ADMIN_KEY=$admin_key "$BIN" keys create --admin-url "http://127.0.0.1:$ADMIN_PORT" \
  --name demo --user demo-user --application demo --expires-in 1d --output json \
  | sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p')

cat <<TXT

keygate is running (proxy :$PROXY_PORT, admin 127.0.0.1:$ADMIN_PORT, upstream 127.0.0.1:$UPSTREAM_PORT).
Log: $RUN_DIR/keygate.log   Data: $RUN_DIR/data (wiped by the next make run)

Bootstrap admin key (shown once): $admin_key
Demo key (user demo-user):        $demo_key

  # 200, the upstream echoes what it received, identity headers included:
  curl -i -H 'X-API-Key: $demo_key' http://127.0.0.1:$PROXY_PORT/hello

  # 401 missing_key:
  curl -i http://127.0.0.1:$PROXY_PORT/hello

  # the admin API:
  curl -s -H 'X-API-Key: $admin_key' http://127.0.0.1:$ADMIN_PORT/v1/keys

Web console: http://127.0.0.1:$ADMIN_PORT/ui/ (sign in with the admin key)

Press Ctrl-C to stop.
TXT
wait "$kg"
