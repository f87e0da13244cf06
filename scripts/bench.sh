#!/usr/bin/env bash
# bench.sh: warden's own performance measurement (`make bench`).
#
# 1. The Go benchmarks, with allocations (auth, proxy, throttle).
# 2. A load comparison on loopback, in one run: direct (no proxy), warden,
#    and nginx doing the same job when nginx is installed (auth_basic +
#    proxy_pass with upstream keep-alive and buffering off, 1 worker, as in
#    tools/peers). For each: requests per second and proxy CPU time per
#    request with good credentials, the same per refused request (a storm of
#    wrong passwords), and the proxy's peak RSS. ROUNDS rounds, targets
#    interleaved; medians with the min-max range.
# 3. At scale, through tools/peers beside nginx, haproxy and a bare Go relay
#    (the floor of a goroutine-per-connection proxy): 1000 token
#    streams and 5000 idle keep-alive connections, with the model server in
#    warden's CPU cgroup and in one of its own (SPLITS="none cgroup";
#    SCALE=0 skips this step). Writes $OUT/scale-none.md, scale-cgroup.md.
#
# Writes $OUT/go-bench.txt, $OUT/load.md, $OUT/load.tsv and $OUT/cpu.svg (a
# chart drawn by tools/benchchart). Needs wrk; uses nginx when present (as
# the upstream too; otherwise the Go test upstream serves). Everything runs on
# 127.0.0.1, every load is bounded in time, and every process started here is
# stopped on exit.
#
#   make bench                              # defaults: 3 rounds of 10 s + 5 s
#   ROUNDS=5 DURATION=20 make bench
#   BASELINE_BIN=/tmp/warden-old make bench # adds that build as warden-base,
#                                           # measured in the same rounds
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}   # s, good credentials
STORM=${STORM:-5}          # s, wrong password
WARMUP=${WARMUP:-2}        # s, unmeasured
CONNS=${CONNS:-64}
OUT=${OUT:-bench-results}
PASSWORD=bench-$RANDOM-$RANDOM

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v go >/dev/null || die "go not found"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

# Pin like tools/peers: load on CPU 0, servers on CPU 1, when there are two.
LOAD=() SERVER=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
  LOAD=(taskset -c 0) SERVER=(taskset -c 1)
fi

log "Go benchmarks"
go test -run '^$' -bench . -skip 'Memory$' -benchmem -count 1 ./auth ./proxy ./throttle | tee "$OUT/go-bench.txt" >&2
grep -E '^Benchmark' "$OUT/go-bench.txt" | awk '$NF == "allocs/op" && $(NF-1) != 0 { bad = 1; print "allocates: " $0 } END { exit bad }' >&2 ||
  die "a benchmark allocates"
# The memory held per idle connection and per stream (Go heap and stacks),
# each benchmark in a process of its own so that neither sees the other's.
log "Go memory benchmarks"
for b in IdleConnectionMemory StreamMemory; do
  go test -run '^$' -bench "^Benchmark$b\$" -benchtime 1x -count 3 ./proxy
done | grep -E '^Benchmark' | tee "$OUT/go-memory.txt" >&2

log "building"
go build -trimpath -ldflags "-s -w" -o "$WORK/warden" .
go build -o "$WORK/upstream" ./e2e/upstream

port=19100
# next_port sets PORT to a port not used yet in this run (no subshell, so
# that the counter moves).
next_port() { port=$((port + 1)); PORT=$port; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  die "nothing listens on $1"
}
start() { # start LOGFILE CMD...: run in the background, remember the PID
  local logf=$1
  shift
  "$@" >"$logf" 2>&1 &
  LAST=$!
  PIDS+=("$LAST")
}

# nginx drops to "nobody" for its workers when started as root, and nobody
# cannot read the private work directory: keep root then.
NGINX_USER=""
[[ $(id -u) == 0 ]] && NGINX_USER="user root;"

# The upstream: nginx answering "ok" (as in tools/peers), or the Go one.
next_port
UP_PORT=$PORT
if command -v nginx >/dev/null; then
  mkdir -p "$WORK/up"
  cat >"$WORK/up/nginx.conf" <<EOF
$NGINX_USER
worker_processes 1;
daemon off;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path $WORK/up/cbt; proxy_temp_path $WORK/up/pt; fastcgi_temp_path $WORK/up/ft;
  uwsgi_temp_path $WORK/up/ut; scgi_temp_path $WORK/up/st;
  server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok\n"; } }
}
EOF
  start "$WORK/up.log" "${SERVER[@]}" nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log"
  UPSTREAM_KIND="nginx, 1 worker, return 200 \"ok\\n\""
  UP_PATH=/
else
  start "$WORK/up.log" "${SERVER[@]}" "$WORK/upstream" -listen "127.0.0.1:$UP_PORT"
  UPSTREAM_KIND="the Go test upstream (nginx not installed)"
  UP_PATH=/status/200
fi
wait_port "$UP_PORT"

TARGETS="direct warden"
if [[ -n ${BASELINE_BIN:-} ]]; then
  [[ -x $BASELINE_BIN ]] || die "BASELINE_BIN=$BASELINE_BIN is not an executable"
  TARGETS+=" warden-base"
fi
command -v nginx >/dev/null && TARGETS+=" nginx"

# start_target NAME: sets T_PID (empty for direct) and T_PORT.
start_target() {
  T_PID= T_PORT=$UP_PORT
  case $1 in
  warden | warden-base)
    local bin=$WORK/warden
    [[ $1 == warden-base ]] && bin=$BASELINE_BIN
    next_port
    T_PORT=$PORT
    next_port
    start "$WORK/$1.log" env WARDEN_LISTEN="127.0.0.1:$T_PORT" WARDEN_ADMIN_LISTEN="127.0.0.1:$PORT" \
      WARDEN_UPSTREAM="http://127.0.0.1:$UP_PORT" WARDEN_PASSWORD="$PASSWORD" WARDEN_LOG_LEVEL=warn \
      WARDEN_AUTH_FAILURE_LIMIT=0 "${SERVER[@]}" "$bin"
    T_PID=$LAST
    ;;
  nginx)
    next_port
    T_PORT=$PORT
    local dir="$WORK/nginx-$T_PORT"
    mkdir -p "$dir"
    printf 'paperspace:{PLAIN}%s\n' "$PASSWORD" >"$dir/htpasswd"
    cat >"$dir/nginx.conf" <<EOF
$NGINX_USER
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path $dir/cbt; proxy_temp_path $dir/pt; fastcgi_temp_path $dir/ft;
  uwsgi_temp_path $dir/ut; scgi_temp_path $dir/st;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive $((2 * CONNS)); keepalive_requests 1000000; }
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Authorization "";
  proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto \$scheme;
  proxy_set_header X-Forwarded-Host \$host;
  proxy_buffering off;
  proxy_request_buffering off;
  server {
    listen 127.0.0.1:$T_PORT;
    auth_basic "bench";
    auth_basic_user_file $dir/htpasswd;
    location / { proxy_pass http://up; }
  }
}
EOF
    start "$dir/stderr.log" "${SERVER[@]}" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    T_PID=$LAST
    ;;
  esac
  wait_port "$T_PORT"
  if [[ -n $T_PID ]] && ! kill -0 "$T_PID" 2>/dev/null; then
    die "$1 exited at start"
  fi
}

stop_target() {
  [[ -n $T_PID ]] || return 0
  kill "$T_PID" 2>/dev/null || true
  wait "$T_PID" 2>/dev/null || true
}

# cpu_ticks PID: user+system ticks of PID and its children (nginx's worker).
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [[ -r /proc/$p/stat ]] || die "process $p is gone (did the target fail to start? see $WORK)"
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
peak_rss_kb() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/^VmHWM/{print $2}' "/proc/$p/status")))
  done
  echo "$total"
}

HZ=$(getconf CLK_TCK)
AUTH_OK="Authorization: Basic $(printf 'paperspace:%s' "$PASSWORD" | base64 -w0)"
AUTH_BAD="Authorization: Basic $(printf 'paperspace:wrong-%s' "$PASSWORD" | base64 -w0)"

# load SECONDS HEADER: prints "requests non2xx" from one bounded wrk run.
load() {
  local out
  out=$(timeout $(($1 + 30)) "${LOAD[@]}" wrk -t1 -c"$CONNS" -d"${1}s" -H "$2" "http://127.0.0.1:$T_PORT$UP_PATH")
  awk '/requests in/{n=$1} /Non-2xx/{bad=$NF} END{print n, bad+0}' <<<"$out"
}

: >"$WORK/rows"
for ((round = 1; round <= ROUNDS; round++)); do
  for t in $TARGETS; do
    start_target "$t"
    load "$WARMUP" "$AUTH_OK" >/dev/null
    pid=${T_PID:-}
    [[ -n $pid ]] && c0=$(cpu_ticks "$pid")
    read -r n bad < <(load "$DURATION" "$AUTH_OK")
    ((bad == 0)) || die "$t answered $bad non-2xx to good credentials"
    rps=$((n / DURATION))
    cpu=- scpu=- srps=- rss=-
    if [[ -n $pid ]]; then
      c1=$(cpu_ticks "$pid")
      cpu=$(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz*1e6/n}')
      c0=$(cpu_ticks "$pid")
      read -r sn _ < <(load "$STORM" "$AUTH_BAD")
      c1=$(cpu_ticks "$pid")
      srps=$((sn / STORM))
      scpu=$(awk -v a="$c0" -v b="$c1" -v n="$sn" -v hz="$HZ" 'BEGIN{printf "%.1f", (b-a)/hz*1e6/n}')
      rss=$(awk -v k="$(peak_rss_kb "$pid")" 'BEGIN{printf "%.1f", k/1024}')
    fi
    log "round $round $t: $rps req/s, $cpu CPU-µs/req; 401: $srps/s, $scpu CPU-µs/401; peak RSS $rss MiB"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rps" "$cpu" "$srps" "$scpu" "$rss" >>"$WORK/rows"
    stop_target
  done
done

# Medians and ranges per target.
awk -F'\t' '
function median(arr, n,   i, j, t) {
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
  return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
}
{ k = $1; if (!(k in seen)) { seen[k] = 1; order[++m] = k }
  c = ++cnt[k]; for (f = 2; f <= 6; f++) { v[k, f, c] = $f } }
END {
  print "target\treq_s\tcpu_us\tcpu_range\tstorm_s\tstorm_cpu_us\tstorm_range\trss_mib"
  for (i = 1; i <= m; i++) {
    k = order[i]; n = cnt[k]
    for (f = 2; f <= 6; f++) {
      lo = ""; hi = ""
      for (c = 1; c <= n; c++) { a[c] = v[k, f, c]; if (a[c] == "-") continue; if (lo == "" || a[c] + 0 < lo) lo = a[c] + 0; if (hi == "" || a[c] + 0 > hi) hi = a[c] + 0 }
      if (v[k, f, 1] == "-") { med[f] = "-"; rng[f] = "-" } else { med[f] = median(a, n); rng[f] = lo "–" hi }
    }
    printf "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", k, med[2], med[3], rng[3], med[4], med[5], rng[5], med[6]
  }
}' "$WORK/rows" >"$OUT/load.tsv"

{
  echo "# warden load comparison"
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M') UTC; $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
  echo "- $(go version | awk '{print $3}'); $(command -v nginx >/dev/null && nginx -v 2>&1 | sed 's/nginx version: //')"
  echo "- wrk -t1 -c$CONNS, ${DURATION}s good credentials and ${STORM}s wrong password per round, $ROUNDS rounds, medians; $(if ((${#LOAD[@]})); then echo "wrk on CPU 0, proxy and upstream on CPU 1"; else echo "not pinned"; fi)"
  echo "- upstream: $UPSTREAM_KIND"
  echo
  echo "| target | req/s | proxy CPU-µs/req | range | 401/s | proxy CPU-µs/401 | range | peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  tail -n +2 "$OUT/load.tsv" | awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, ($5 == 0 ? "-" : $5), $6, $7, $8}'
} >"$OUT/load.md"
cat "$OUT/load.md"

go run ./tools/benchchart -in "$OUT/load.tsv" -out "$OUT/cpu.svg"
log "wrote $OUT/go-bench.txt, $OUT/go-memory.txt, $OUT/load.md, $OUT/load.tsv, $OUT/cpu.svg"

# 3. At scale (README, Performance): a thousand token streams and thousands
# of idle keep-alive connections, through tools/peers beside nginx and
# haproxy, in both arrangements: the model server in warden's CPU cgroup
# and in a cgroup of its own, as in a pod (SPLIT=cgroup needs root and a
# writable cpu controller). SCALE=0 skips it; it needs nginx and haproxy.
if [[ ${SCALE:-1} == 0 ]]; then
  log "SCALE=0: the cases at scale are skipped"
  exit 0
fi
if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
  log "nginx or haproxy not installed: the cases at scale are skipped (apt-get install nginx haproxy)"
  exit 0
fi
scale_targets="direct nginx haproxy go-relay warden"
scale_env=()
if [[ -n ${BASELINE_BIN:-} ]]; then
  scale_targets+=" warden-b"
  scale_env=(WARDEN_B_BIN="$BASELINE_BIN")
fi
for split in ${SPLITS:-none cgroup}; do
  log "at scale, SPLIT=$split"
  env "${scale_env[@]}" SPLIT="$split" WARDEN_BIN="$WORK/warden" TARGETS="$scale_targets" STREAM_EXTRA= \
    CASES="fanout idle" RESULTS="$OUT/scale-$split.md" bash tools/peers/peers.sh >/dev/null
  log "wrote $OUT/scale-$split.md"
done
