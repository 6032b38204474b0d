#!/usr/bin/env bash
# Peer comparison: keygate (A) against nginx and HAProxy (B) each doing a
# plain key check in front of the same upstream, with the method described
# in bench/lib.sh. The peers are configured the way an operator would do
# this job with them: the X-API-Key header looked up in a map of known
# keys (a string match: no checksum, no hashing, no store, no expiry, no
# metrics), 401 when it is not there, then the key header removed, the
# caller's identity and X-Forwarded-For/-Proto/-Host and X-Request-Id set,
# and the request forwarded over kept-alive upstream connections. Every
# process gets both CPUs (nginx two workers, HAProxy two threads, keygate
# GOMAXPROCS 2) and all of them are sent the same requests. The peer
# "bare" is bench/bareproxy (no key check), which separates what the key
# check and keygate's other work cost from what the Go runtime and fasthttp
# cost against C servers.
#   ./bench/peers.sh                 # ROUNDS=9 per peer; PEERS="nginx haproxy bare"
#   NGINX=/usr/sbin/nginx HAPROXY=/usr/sbin/haproxy ./bench/peers.sh
# nginx and haproxy come from NGINX/HAPROXY, else from PATH (and
# /usr/sbin), else Debian's packages are downloaded with apt-get and
# unpacked into the work directory: nothing is installed, no service
# started. Output: bench/results/peers.txt (and stdout).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
ROUNDS=${ROUNDS:-9}
. bench/lib.sh
PEERS=${PEERS:-nginx haproxy bare}
need_wrk

# find_peer NAME: the path of a usable NAME binary, or nothing.
find_peer() {
  local var bin
  var=$(echo "$1" | tr a-z A-Z)
  bin=${!var:-}
  [ -n "$bin" ] || bin=$(PATH=$PATH:/usr/sbin command -v "$1" || true)
  [ -n "$bin" ] && echo "$bin"
  return 0
}

# unpack_peers: Debian's nginx and haproxy (and the libraries haproxy
# needs that a Go machine lacks) unpacked under $work/peers; peer_env
# holds the LD_LIBRARY_PATH to run them with.
peer_env=
unpack_peers() {
  command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
    { echo "peers: nginx/haproxy not found and no apt-get to fetch them; set NGINX and HAPROXY" >&2; exit 1; }
  mkdir -p "$work/peers/debs"
  local pkgs="nginx haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1"
  # apt warns that root downloads unsandboxed; anything else it says is kept.
  if ! (cd "$work/peers/debs" && apt-get download -q $pkgs 2>&1 | { grep -v '^W: Download is performed unsandboxed' || true; } >&2); then
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$work/peers/debs" && apt-get download -q $pkgs 2>&1 | { grep -v '^W: Download is performed unsandboxed' || true; } >&2) ||
      { echo "peers: apt-get download failed" >&2; exit 1; }
  fi
  local d
  for d in "$work"/peers/debs/*.deb; do dpkg -x "$d" "$work/peers/root"; done
  peer_env=$(find "$work/peers/root" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
}

declare -A bins
for p in $PEERS; do
  case $p in nginx|haproxy) bins[$p]=$(find_peer "$p") ;; bare) ;; *) echo "peers: unknown peer $p (nginx, haproxy, bare)" >&2; exit 2;; esac
done
for p in $PEERS; do
  [ "$p" != bare ] || continue
  if [ -z "${bins[$p]}" ]; then
    [ -d "$work/peers/root" ] || unpack_peers
    bins[$p]=$work/peers/root/usr/sbin/$p
  fi
  missing=$(LD_LIBRARY_PATH=$peer_env ldd "${bins[$p]}" 2>&1 | { grep 'not found' || true; })
  [ -z "$missing" ] || { echo "peers: ${bins[$p]} misses libraries:" >&2; echo "$missing" >&2; exit 1; }
done

build_common
CGO_ENABLED=0 go build -o "$work/bareproxy" ./bench/bareproxy
bins[bare]=$work/bareproxy
keygate_config "$work/keygate.yaml" 18080 18090 "$work/data" required
start_upstream
create_key "$work/keygate.yaml" 18090

mkdir -p "$work/nginx/tmp" "$work/haproxy"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  map_hash_bucket_size 128;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  map \$http_x_api_key \$api_user {
    default "";
    "$key" "bench";
  }
  map \$http_x_api_key \$api_key_id {
    default "";
    "$key" "$key_id";
  }
  map \$http_x_api_key \$api_key_name {
    default "";
    "$key" "bench";
  }
  upstream up {
    server 127.0.0.1:18000;
    keepalive 256;
  }
  server {
    listen 127.0.0.1:18082;
    location / {
      if (\$api_user = "") { return 401; }
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-API-Key "";
      # The identity headers keygate sets for this key; the other
      # identity headers a client might send are emptied (nginx drops
      # names with '_' by default).
      proxy_set_header X-Keygate-Key-Id \$api_key_id;
      proxy_set_header X-Keygate-Key-Name \$api_key_name;
      proxy_set_header X-Keygate-User \$api_user;
      proxy_set_header X-Keygate-Auth key;
      proxy_set_header X-Keygate-Application "";
      proxy_set_header X-Keygate-Tenant "";
      proxy_set_header X-Keygate-Scopes "";
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Request-Id \$request_id;
      add_header X-Request-Id \$request_id always;
    }
  }
}
CONF

echo "$key bench" > "$work/haproxy/users.map"
echo "$key $key_id" > "$work/haproxy/ids.map"
echo "$key bench" > "$work/haproxy/names.map"
cat > "$work/haproxy/haproxy.cfg" <<CONF
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
frontend fe
  bind 127.0.0.1:18083
  http-request set-var(txn.user) req.hdr(x-api-key),map_str($work/haproxy/users.map)
  http-request return status 401 unless { var(txn.user) -m found }
  http-request set-var(txn.id) req.hdr(x-api-key),map_str($work/haproxy/ids.map)
  http-request set-var(txn.name) req.hdr(x-api-key),map_str($work/haproxy/names.map)
  http-request del-header x-api-key
  http-request del-header x-keygate- -m beg
  http-request set-header X-Keygate-Key-Id %[var(txn.id)]
  http-request set-header X-Keygate-Key-Name %[var(txn.name)]
  http-request set-header X-Keygate-User %[var(txn.user)]
  http-request set-header X-Keygate-Auth key
  http-request set-header X-Forwarded-For %[src]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  unique-id-format %[uuid()]
  unique-id-header X-Request-Id
  http-response set-header X-Request-Id %[unique-id]
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:18000
CONF

# start_peer NAME: start NAME in the foreground of its own process (pid in
# $started) and wait until it answers a keyed request with 200 and an
# unkeyed one with 401, so its key check is known to work.
start_peer() {
  local port log=$work/$1.log
  case $1 in
    nginx) port=18082; need_free $port
      LD_LIBRARY_PATH=$peer_env "${bins[nginx]}" -p "$work/nginx/" -c "$work/nginx/nginx.conf" -e stderr 2>"$log" & started=$! ;;
    haproxy) port=18083; need_free $port
      LD_LIBRARY_PATH=$peer_env "${bins[haproxy]}" -db -f "$work/haproxy/haproxy.cfg" 2>"$log" & started=$! ;;
    bare) port=18084; need_free $port
      "${bins[bare]}" -listen 127.0.0.1:$port -upstream 127.0.0.1:18000 2>"$log" & started=$! ;;
  esac
  pids+=($started)
  local up=
  for _ in $(seq 100); do curl -fs -o /dev/null -H "X-API-Key: $key" "http://127.0.0.1:$port/" && { up=1; break; }; sleep 0.1; done
  [ -n "$up" ] || { echo "bench: $1 did not start; its log:" >&2; cat "$log" >&2; exit 1; }
  alive "$started" "$1"
  [ "$1" != bare ] || return 0 # no key check to test
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
  [ "$code" = 401 ] || { echo "bench: $1 answered $code without a key, want 401" >&2; exit 1; }
}

a_url=http://127.0.0.1:18080/
out="date: $(date -u +%FT%TZ)  go: $(go version | awk '{print $3}')  cpus: $(nproc)  keygate: $(git rev-parse --short HEAD)$([ -z "$(git status --porcelain)" ] || echo +changes)
wrk -t$THREADS -c$CONNS with the key header, $ROUNDS rounds per peer (both started afresh each round), each round $PAIRS ABBA pairs of ${SLICE}s slices"
for peer in $PEERS; do
  case $peer in
    nginx) b_url=http://127.0.0.1:18082/; version=$(LD_LIBRARY_PATH=$peer_env "${bins[$peer]}" -v 2>&1 | sed -n 1p) ;;
    haproxy) b_url=http://127.0.0.1:18083/; version=$(LD_LIBRARY_PATH=$peer_env "${bins[$peer]}" -v 2>&1 | sed -n 1p) ;;
    bare) b_url=http://127.0.0.1:18084/; version="bare fasthttp proxy (bench/bareproxy, no key check)" ;;
  esac
  start_pair() {
    start_peer "$peer"; pb=$started
    start_keygate "$work/keygate" "$work/keygate.yaml" 18090; kg=$started
    curl -fs -H "X-API-Key: $key" "$a_url" >/dev/null
  }
  stop_pair() { stop "$kg"; stop "$pb"; }
  slice_a() { rate -H "X-API-Key: $key" "$a_url"; }
  slice_b() { rate -H "X-API-Key: $key" "$b_url"; }
  warm() {
    SLICE=1 rate -H "X-API-Key: $key" "$b_url" >/dev/null
    SLICE=1 rate -H "X-API-Key: $key" "$a_url" >/dev/null
  }
  echo "peer: $version" >&2
  measure_rounds
  out+="
$version, req/s per round: ${b_rps[*]}  -> median $(median "${b_rps[@]}")
keygate (auth: required), req/s per round: ${a_rps[*]}  -> median $(median "${a_rps[@]}")
ratio keygate/$peer per round: ${ratios[*]}
median ratio keygate/$peer: $(median "${ratios[@]}")  (quartiles $(quartiles "${ratios[@]}"))"
done
mkdir -p bench/results
echo "$out" | tee bench/results/peers.txt
