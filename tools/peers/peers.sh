#!/usr/bin/env bash
# peers.sh: compare HTTP reverse proxies that enforce Basic auth, side by side.
#
#   bash peers.sh                                        # the peers, no warden
#   WARDEN_BIN=bin/warden bash tools/peers/peers.sh     # ... plus warden
#   CASES="fanout idle" bash peers.sh                    # only some cases
#   SPLIT=cgroup PROXY_CPU_LIMIT=0.5 bash peers.sh       # as a pod: separate CPU cgroups, sidecar limit
#
# Everything listens on, and is sent to, 127.0.0.1 only; every load run is
# bounded in time; every process started here is ended here, by its PID.
# README.md beside this script explains the cases and how to read the numbers.
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)

# ------------------------------------------------------------- settings (env)
DURATION=${DURATION:-10}            # s, measured wrk run with good credentials
STORM_DURATION=${STORM_DURATION:-5} # s, measured wrk run with a wrong password
WARMUP=${WARMUP:-2}                 # s, unmeasured wrk run before DURATION
ROUNDS=${ROUNDS:-1}                 # rounds of the small-request/storm cases; medians are reported
CONNS=${CONNS:-64}                  # wrk connections
THREADS=${THREADS:-1}               # wrk threads
PIN=${PIN:-1}                       # 1: wrk and probes on LOAD_CPUS, proxy+upstreams on SERVER_CPUS
LOAD_CPUS=${LOAD_CPUS:-0}
SERVER_CPUS=${SERVER_CPUS:-1}
BODY_BYTES=${BODY_BYTES:-67108864}  # large-body case: bytes per transfer
BODY_REPS=${BODY_REPS:-5}           # transfers per direction; the median is reported
SSE_REPS=${SSE_REPS:-3}             # SSE probes per target
STREAMS=${STREAMS:-1000}            # token streams: concurrent SSE clients, all started within 1 s
EVENTS_PER_STREAM=${EVENTS_PER_STREAM:-100}
STREAM_INTERVAL=${STREAM_INTERVAL:-50ms} # time between a stream's events (50ms: 20 tokens/s)
IDLE_CONNS=${IDLE_CONNS:-5000}      # idle connections: keep-alive connections held at once
IDLE_HOLD=${IDLE_HOLD:-5}           # s they are held idle
CASES=${CASES:-small storm sse bodies fanout idle}
SPLIT=${SPLIT:-none}                # none, or cgroup: upstreams and proxy in separate CPU cgroups
PROXY_CPU_LIMIT=${PROXY_CPU_LIMIT:-} # CPUs (e.g. 0.5): the proxy's cgroup CPU quota (SPLIT=cgroup)
BASE_PORT=${BASE_PORT:-18100}       # first loopback port tried
RESULTS=${RESULTS:-peers-results.md}
KEEP_TMP=${KEEP_TMP:-0}             # 1: keep the work dir (configs, logs, raw wrk output)
IDLE_WAIT=${IDLE_WAIT:-0}           # s: wait up to this long for background CPU <= BG_LIMIT before starting
BG_LIMIT=${BG_LIMIT:-5}             # %: background CPU above this marks a row as noisy
WARDEN_BIN=${WARDEN_BIN:-}
WARDEN_ENV=${WARDEN_ENV:-}          # extra VAR=value settings for warden, space-separated
WARDEN_B_BIN=${WARDEN_B_BIN:-}      # target warden-b: another build (default WARDEN_BIN) ...
WARDEN_B_ENV=${WARDEN_B_ENV:-}      # ... or other settings, side by side with warden
BENCH_USER=paperspace
BENCH_PASSWORD=${BENCH_PASSWORD:-peers-bench-Secret-42}
WRONG_PASSWORD="${BENCH_PASSWORD}-wrong"

# Targets. The *-defaults variants are the peers with their out-of-the-box
# streaming behaviour (see README); by default they only run the streaming
# and large-body cases (STREAM_EXTRA), but they may be put in TARGETS too.
ALL_TARGETS="direct nginx nginx-auto nginx-defaults haproxy haproxy-defaults caddy go-stdlib go-relay warden warden-b"
if [[ -z ${TARGETS:-} ]]; then
  TARGETS="direct nginx nginx-auto haproxy caddy go-stdlib"
  [[ -n $WARDEN_BIN ]] && TARGETS+=" warden"
fi
STREAM_EXTRA=${STREAM_EXTRA-nginx-defaults haproxy-defaults}

# ------------------------------------------------------------------ helpers
log() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '\n[peers] ERROR: %s\n' "$*" >&2
  exit 1
}
trap 'die "line $LINENO: command failed (exit $?): $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in DURATION STORM_DURATION WARMUP ROUNDS CONNS THREADS PIN BODY_BYTES BODY_REPS SSE_REPS BASE_PORT IDLE_WAIT BG_LIMIT \
  STREAMS EVENTS_PER_STREAM IDLE_CONNS IDLE_HOLD; do
  is_uint "${!v}" || die "$v must be a whole number, got '${!v}'"
done
((DURATION > 0 && STORM_DURATION > 0 && ROUNDS > 0 && CONNS > 0 && THREADS > 0 && CONNS >= THREADS)) ||
  die "need DURATION, STORM_DURATION, ROUNDS, CONNS, THREADS > 0 and CONNS >= THREADS"
((BODY_BYTES > 0 && BODY_REPS > 0 && SSE_REPS > 0)) || die "need BODY_BYTES, BODY_REPS, SSE_REPS > 0"
((STREAMS > 0 && EVENTS_PER_STREAM > 0 && EVENTS_PER_STREAM <= 1000000 && IDLE_CONNS > 0)) ||
  die "need STREAMS, IDLE_CONNS > 0 and EVENTS_PER_STREAM from 1 to 1000000"
((IDLE_HOLD >= 2)) || die "IDLE_HOLD must be at least 2 (s): a fresh request is made while the connections are held"
[[ $STREAM_INTERVAL =~ ^([0-9]+(\.[0-9]+)?)(us|ms|s)$ ]] ||
  die "STREAM_INTERVAL must be a duration such as 50ms, 0.1s or 500us, got '$STREAM_INTERVAL'"
STREAM_INTERVAL_S=$(awk -v v="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[3]}" 'BEGIN{printf "%.6f", v / (u=="us" ? 1e6 : (u=="ms" ? 1e3 : 1))}')
awk -v s="$STREAM_INTERVAL_S" 'BEGIN{exit !(s <= 60)}' || die "STREAM_INTERVAL may be 60s at most (the upstream's limit)"

ALL_CASES="small storm sse bodies fanout idle"
for c in $CASES; do
  [[ " $ALL_CASES " == *" $c "* ]] || die "unknown case '$c' in CASES (known: $ALL_CASES)"
done
[[ -n ${CASES// /} ]] || die "CASES is empty (known: $ALL_CASES)"
has_case() { [[ " $CASES " == *" $1 "* ]]; }

[[ $SPLIT == none || $SPLIT == cgroup ]] || die "SPLIT must be none or cgroup, got '$SPLIT'"
CG_PERIOD=100000 # µs, the CFS period for PROXY_CPU_LIMIT (the kernel's and Kubernetes' default)
CG_QUOTA=
if [[ -n $PROXY_CPU_LIMIT ]]; then
  [[ $SPLIT == cgroup ]] || die "PROXY_CPU_LIMIT needs SPLIT=cgroup (the limit is set on the proxy's own cgroup)"
  [[ $PROXY_CPU_LIMIT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "PROXY_CPU_LIMIT must be a number of CPUs such as 0.5 or 2, got '$PROXY_CPU_LIMIT'"
  CG_QUOTA=$(awk -v l="$PROXY_CPU_LIMIT" -v p="$CG_PERIOD" 'BEGIN{printf "%.0f", l * p}')
  ((CG_QUOTA >= 1000)) || die "PROXY_CPU_LIMIT=$PROXY_CPU_LIMIT is below the kernel's smallest quota (0.01 CPU)"
fi
[[ $BENCH_PASSWORD =~ ^[A-Za-z0-9._-]+$ ]] ||
  die "BENCH_PASSWORD may only hold letters, digits, '.', '_' and '-' (it is written into proxy configs)"
for t in $TARGETS $STREAM_EXTRA; do
  [[ " $ALL_TARGETS " == *" $t "* ]] || die "unknown target '$t' (known: $ALL_TARGETS)"
done
want() { [[ " $TARGETS " == *" $1 "* ]]; }
# noauth NAME: a target that checks no credentials (no 401s, no storm).
noauth() { [[ $1 == direct || $1 == go-relay ]]; }

# The streaming phase (cases sse and bodies): TARGETS (nginx-auto streams
# like nginx, so it is left out), each *-defaults variant right after its
# peer, if that peer runs.
STREAM_TARGETS=
if has_case sse || has_case bodies; then
  for t in $TARGETS; do
    [[ $t == nginx-auto ]] && continue
    [[ " $STREAM_TARGETS " == *" $t "* ]] || STREAM_TARGETS+=" $t"
    for x in $STREAM_EXTRA; do
      if [[ $x == "$t-defaults" && " $STREAM_TARGETS " != *" $x "* ]]; then STREAM_TARGETS+=" $x"; fi
    done
  done
fi
STREAM_TARGETS=${STREAM_TARGETS# }
uses() { [[ " $TARGETS $STREAM_TARGETS " == *" $1"* ]]; } # uses haproxy: haproxy or haproxy-defaults

if uses warden; then
  [[ -n $WARDEN_BIN ]] || die "target warden needs WARDEN_BIN=path/to/built/warden"
  [[ -f $WARDEN_BIN && -x $WARDEN_BIN ]] || die "WARDEN_BIN='$WARDEN_BIN' is not an executable file"
  WARDEN_BIN="$(cd "$(dirname "$WARDEN_BIN")" && pwd)/$(basename "$WARDEN_BIN")"
  WARDEN_B_BIN=${WARDEN_B_BIN:-$WARDEN_BIN}
  [[ -f $WARDEN_B_BIN && -x $WARDEN_B_BIN ]] || die "WARDEN_B_BIN='$WARDEN_B_BIN' is not an executable file"
  WARDEN_B_BIN="$(cd "$(dirname "$WARDEN_B_BIN")" && pwd)/$(basename "$WARDEN_B_BIN")"
fi

# Tools: all checked up front, so that a missing one fails before any load runs.
GO=${GO:-go}
missing=()
need_tool() { command -v "$1" >/dev/null 2>&1 || missing+=("$1"); }
for t in wrk nginx "$GO" timeout base64 awk sort paste getconf date uname; do need_tool "$t"; done
((PIN)) && need_tool taskset
uses haproxy && need_tool haproxy
uses caddy && need_tool caddy
if ((${#missing[@]})); then
  die "missing tool(s): ${missing[*]}
  Debian/Ubuntu: apt-get update && apt-get install -y nginx haproxy caddy wrk
  Go: put Go's bin directory on PATH (or set GO=path/to/go)."
fi

if ((PIN)); then
  SERVER=(taskset -c "$SERVER_CPUS")
  LOAD=(taskset -c "$LOAD_CPUS")
  "${SERVER[@]}" true 2>/dev/null || die "cannot pin to SERVER_CPUS=$SERVER_CPUS (set PIN=0 or other CPUs)"
  "${LOAD[@]}" true 2>/dev/null || die "cannot pin to LOAD_CPUS=$LOAD_CPUS (set PIN=0 or other CPUs)"
else
  SERVER=()
  LOAD=()
fi
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(getconf _NPROCESSORS_ONLN)
POOL=$((CONNS * 2)) # idle keep-alive connections to the upstream each peer may keep

# Open files: the fanout and idle cases hold thousands of connections. Every
# process started here inherits the soft limit, so raise it to the hard one.
ulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true
NOFILE=$(ulimit -S -n)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
MAX_CONNS=20000 # nginx worker_connections (each nginx, also the upstream)
# haproxy reserves two descriptors per connection (client and server side)
# and refuses to start when it cannot get them, so its maxconn is 20000 only
# where the open-files limit allows that.
HAPROXY_MAXCONN=$(((NOFILE - 200) / 2))
((HAPROXY_MAXCONN <= MAX_CONNS)) || HAPROXY_MAXCONN=$MAX_CONNS
# need_fds CASE N WHAT: fail unless N connections at once fit the limits.
need_fds() {
  local n=$2
  ((n + 200 <= NOFILE)) || die "the $1 case needs about $((n + 200)) open files ($3), the limit is $NOFILE (ulimit -Hn); lower it or raise the limit"
  ((n <= MAX_CONNS)) || die "the $1 case needs $n connections at once ($3), nginx is configured for $MAX_CONNS"
}
if has_case fanout; then
  need_fds fanout $((2 * STREAMS)) "STREAMS=$STREAMS: a client and an upstream connection per stream in the proxy"
  if want haproxy && ((STREAMS > HAPROXY_MAXCONN)); then
    die "STREAMS=$STREAMS is above haproxy's maxconn $HAPROXY_MAXCONN (from the open-files limit $NOFILE)"
  fi
fi
if has_case idle; then
  need_fds idle $((IDLE_CONNS + POOL)) "IDLE_CONNS=$IDLE_CONNS client connections plus up to $POOL pooled upstream ones"
  if want haproxy && ((IDLE_CONNS > HAPROXY_MAXCONN)); then
    die "IDLE_CONNS=$IDLE_CONNS is above haproxy's maxconn $HAPROXY_MAXCONN (from the open-files limit $NOFILE)"
  fi
fi

WORK=$(mktemp -d -t peers-bench.XXXXXX)

# ------------------------------------------------------ process bookkeeping
STARTED=() # PIDs started by this script, in start order
LAST_PID=

# start_bg LOGFILE CMD...: start CMD in the background, its PID in LAST_PID.
start_bg() {
  local logf=$1
  shift
  "$@" >"$logf" 2>&1 &
  LAST_PID=$!
  STARTED+=("$LAST_PID")
  # in case this script is killed with SIGKILL and cannot clean up:
  echo "$LAST_PID $*" >>"$WORK/started.pids"
}

# stat_fields PID: the fields of /proc/PID/stat after "(comm)"; index i holds
# field i+3 of proc(5): 1 ppid, 11 utime, 12 stime, 13 cutime, 14 cstime,
# 19 starttime. Fails when the process is gone.
stat_fields() {
  local line
  { IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  echo "${line##*) }"
}

# alive PID: true while PID runs (a zombie counts as gone).
alive() {
  local f
  f=$(stat_fields "$1") || return 1
  [[ ${f:0:1} != Z ]]
}

# proc_tree PID: PID and all its descendants, one per line.
proc_tree() {
  local root=$1 f line pid ppid k
  local -A kids=()
  for f in /proc/[0-9]*/stat; do
    { IFS= read -r line <"$f"; } 2>/dev/null || continue
    pid=${line%% *}
    line=${line##*) }
    read -r _ ppid _ <<<"$line"
    kids[$ppid]+=" $pid"
  done
  local -a queue=("$root")
  while ((${#queue[@]})); do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    [[ -d /proc/$pid ]] || continue
    echo "$pid"
    for k in ${kids[$pid]:-}; do queue+=("$k"); done
  done
}

starttime() {
  local line
  local -a f
  line=$(stat_fields "$1") || return 0
  read -ra f <<<"$line"
  echo "${f[19]}"
}

# stop_tree PID: TERM the process, wait up to 5 s, then KILL; then KILL any
# descendant that outlived it (same PID and same start time only).
stop_tree() {
  local pid=$1 d i
  local -a desc=() keep=()
  while read -r d; do
    [[ $d == "$pid" ]] || desc+=("$d:$(starttime "$d")")
  done < <(proc_tree "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  for d in "${desc[@]}"; do
    if alive "${d%%:*}" && [[ $(starttime "${d%%:*}") == "${d#*:}" ]]; then
      kill -KILL "${d%%:*}" 2>/dev/null || true
    fi
  done
  for i in "${STARTED[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
  STARTED=("${keep[@]}")
}

# ------------------------------------------------- arrangement (SPLIT)
# SPLIT=cgroup: the upstreams run in one CPU cgroup ("model") and the proxy
# under test in another ("sidecar"), as the model server and the sidecar
# containers of a Kubernetes pod. Each is started through cgrun, which moves
# itself into its group and then becomes the command, so the command, its
# threads and its children run in the group from their first instruction.
MODEL=("${SERVER[@]}")   # command prefix for the upstreams
SIDECAR=("${SERVER[@]}") # command prefix for the proxy under test
CG_VER=                  # 1 or 2 (SPLIT=cgroup)
CG_DIR=                  # this run's parent group, removed at exit
CG_ROOT_CPU=0            # 1: this run enabled the v2 cpu controller at the root; undone at exit
CG_V2=/sys/fs/cgroup
CG_V1=/sys/fs/cgroup/cpu

cg_write() { # cg_write FILE VALUE [HINT]: write to a cgroup file or fail, saying why
  local err
  err=$({ printf '%s\n' "$2" >"$1"; } 2>&1) || die "SPLIT=cgroup: cannot write '$2' to $1: ${err##*: }${3:+ ($3)}"
}

cg_setup() {
  local root err
  # v2 first: "cpu" listed in the root's cgroup.controllers. On a hybrid
  # system the v2 tree (/sys/fs/cgroup/unified) has no cpu controller.
  if [[ -f $CG_V2/cgroup.controllers ]] && grep -qw cpu "$CG_V2/cgroup.controllers"; then
    CG_VER=2
    root=$CG_V2
  elif [[ -f $CG_V1/cpu.cfs_quota_us ]]; then
    CG_VER=1
    root=$CG_V1
  else
    die "SPLIT=cgroup needs the cgroup cpu controller: neither cgroup v2 with 'cpu' in $CG_V2/cgroup.controllers nor cgroup v1 at $CG_V1 was found"
  fi
  CG_DIR="$root/peers-bench-${WORK##*.}"
  err=$(mkdir "$CG_DIR" 2>&1) ||
    die "SPLIT=cgroup: cannot create the cgroup $CG_DIR (needs root and a writable cgroup file system): ${err##*: }"
  echo "$CG_DIR" >"$WORK/cgroup" # to remove by hand, should this script be killed with SIGKILL
  if ((CG_VER == 2)); then
    # Children get the cpu controller only where their parent enables it;
    # v2 allows that only in a group without processes (or the root).
    if ! grep -qw cpu "$root/cgroup.subtree_control"; then
      cg_write "$root/cgroup.subtree_control" +cpu \
        "in a container, v2 refuses while processes run in $root itself; run on the host or use SPLIT=none"
      CG_ROOT_CPU=1
    fi
    cg_write "$CG_DIR/cgroup.subtree_control" +cpu
  fi
  err=$(mkdir "$CG_DIR/model" "$CG_DIR/sidecar" 2>&1) || die "SPLIT=cgroup: cannot create the groups in $CG_DIR: ${err##*: }"
  if [[ -n $CG_QUOTA ]]; then
    if ((CG_VER == 2)); then
      cg_write "$CG_DIR/sidecar/cpu.max" "$CG_QUOTA $CG_PERIOD"
    else
      cg_write "$CG_DIR/sidecar/cpu.cfs_period_us" "$CG_PERIOD"
      cg_write "$CG_DIR/sidecar/cpu.cfs_quota_us" "$CG_QUOTA"
    fi
  fi
  # shellcheck disable=SC2016 # the $ are for the wrapper, written verbatim
  printf '%s\n' '#!/bin/sh' \
    '# cgrun GROUP CMD [ARG...]: move this process into the cgroup directory GROUP,' \
    '# then become CMD (same PID); its threads and children stay in GROUP.' \
    'echo $$ >"$1/cgroup.procs" || exit 125' 'shift' 'exec "$@"' >"$WORK/bin/cgrun"
  chmod +x "$WORK/bin/cgrun"
  err=$("$WORK/bin/cgrun" "$CG_DIR/model" true 2>&1) ||
    die "SPLIT=cgroup: cannot move a process into $CG_DIR/model: $err"
  MODEL=("$WORK/bin/cgrun" "$CG_DIR/model" "${SERVER[@]}")
  SIDECAR=("$WORK/bin/cgrun" "$CG_DIR/sidecar" "${SERVER[@]}")
}

# cg_check PID GROUP NAME: with SPLIT=cgroup, fail unless PID runs in GROUP.
cg_check() {
  [[ $SPLIT == cgroup ]] || return 0
  grep -q "/${CG_DIR##*/}/$2\$" "/proc/$1/cgroup" 2>/dev/null ||
    die "$3 (PID $1) is not in the cgroup $CG_DIR/$2: $(tr '\n' ' ' 2>/dev/null <"/proc/$1/cgroup")"
}

# cg_remove: remove this run's groups (their processes are gone by then).
cg_remove() {
  local d i
  [[ -n $CG_DIR && -d $CG_DIR ]] || return 0
  for d in "$CG_DIR/sidecar" "$CG_DIR/model" "$CG_DIR"; do
    [[ -d $d ]] || continue
    for ((i = 0; i < 50; i++)); do # an ending process may take a moment to leave
      rmdir "$d" 2>/dev/null && break
      sleep 0.1
    done
    if [[ -d $d ]]; then
      log "could not remove the cgroup $d (processes still in it: $(tr '\n' ' ' 2>/dev/null <"$d/cgroup.procs"))"
    fi
  done
  if ((CG_ROOT_CPU)); then { echo -cpu >"$CG_V2/cgroup.subtree_control"; } 2>/dev/null || true; fi
}

# cg_throttle: "periods throttled" from the sidecar group's cpu.stat: the
# CFS periods in which it ran, and those in which it used up its quota.
cg_throttle() {
  if [[ -z $CG_QUOTA ]]; then
    echo "0 0"
    return
  fi
  awk '$1=="nr_periods"{p=$2} $1=="nr_throttled"{t=$2} END{print p+0, t+0}' "$CG_DIR/sidecar/cpu.stat"
}

arrangement() { # one line for the results header
  if [[ $SPLIT == none ]]; then
    echo "the upstreams and the proxy in one CPU cgroup (SPLIT=none)"
    return
  fi
  local lim="no CPU limit"
  if [[ -n $CG_QUOTA ]]; then
    if ((CG_VER == 2)); then
      lim="sidecar CPU limit $PROXY_CPU_LIMIT CPU (cpu.max \"$CG_QUOTA $CG_PERIOD\")"
    else
      lim="sidecar CPU limit $PROXY_CPU_LIMIT CPU (cpu.cfs_quota_us $CG_QUOTA per cpu.cfs_period_us $CG_PERIOD)"
    fi
  fi
  echo "SPLIT=cgroup: the upstreams in CPU cgroup \"model\", the proxy in \"sidecar\" (cgroup v$CG_VER, under ${CG_DIR%/*}); $lim"
}

cleanup() {
  local rc=$? i
  trap - ERR
  set +e
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_tree "${STARTED[$i]}"; done
  cg_remove
  if ((KEEP_TMP || rc != 0)); then
    [[ -d $WORK ]] && log "work dir kept for inspection: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT

# cpu_ticks PID...: utime+stime (+ that of reaped children) of the processes.
cpu_ticks() {
  local total=0 pid line
  local -a f
  for pid in "$@"; do
    line=$(stat_fields "$pid") || continue
    read -ra f <<<"$line"
    total=$((total + f[11] + f[12] + f[13] + f[14]))
  done
  echo "$total"
}
tree_ticks() { # tree_ticks PID: cpu_ticks of PID's tree; 0 without a PID
  local -a pids=()
  if [[ -n $1 ]]; then mapfile -t pids < <(proc_tree "$1"); fi
  if ((${#pids[@]})); then cpu_ticks "${pids[@]}"; else echo 0; fi
}

# vm_kib FIELD PID...: sum of a /proc/PID/status size (VmHWM, VmRSS) in KiB.
vm_kib() {
  local field=$1 total=0 pid k v
  shift
  for pid in "$@"; do
    while read -r k v _; do
      [[ $k == "$field:" ]] && total=$((total + v))
    done 2>/dev/null <"/proc/$pid/status" || true
  done
  echo "$total"
}
hwm_kib() { vm_kib VmHWM "$@"; } # peak resident set since the process started
rss_kib() { vm_kib VmRSS "$@"; } # resident set now

# Background load: CPU used by every process outside this script's tree
# (kernel threads aside) plus hypervisor steal, as a share of the machine.
other_snapshot() { # "pid_starttime ticks" lines, sorted
  local -A ours=()
  local p f line pid
  while read -r p; do ours[$p]=1; done < <(proc_tree "$$")
  for f in /proc/[0-9]*/stat; do
    { IFS= read -r line <"$f"; } 2>/dev/null || continue
    pid=${line%% *}
    local -a x
    read -ra x <<<"${line##*) }"
    [[ -n ${ours[$pid]:-} || -n ${ours[${x[1]}]:-} ]] && continue # ours, or our helper subshells
    [[ $pid == 2 || ${x[1]} == 2 ]] && continue                   # kernel threads
    echo "${pid}_${x[19]} $((x[11] + x[12] + x[13] + x[14]))"
  done | sort
}
steal_ticks() { awk '/^cpu /{print $9}' /proc/stat; }
BG_T0=
BG_STEAL0=
mid_time() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.6f", (a+b)/2}'; } # a scan's mid-point
bg_start() {
  local t=$EPOCHREALTIME
  other_snapshot >"$WORK/bg.before"
  BG_STEAL0=$(steal_ticks)
  BG_T0=$(mid_time "$t" "$EPOCHREALTIME")
}
bg_pct() { # background CPU % of the whole machine since bg_start
  local t=$EPOCHREALTIME t1 steal1 other
  steal1=$(steal_ticks)
  other_snapshot >"$WORK/bg.after"
  t1=$(mid_time "$t" "$EPOCHREALTIME")
  # A process that ends moves its whole time into its parent's cutime/cstime, so
  # the sum over all processes after, minus the sum before, is the time spent
  # in between (processes that started and ended in between included).
  other=$(awk 'FNR==NR{b+=$2; next} {a+=$2} END{d=a-b; print (d>0 ? d : 0)}' "$WORK/bg.before" "$WORK/bg.after")
  awk -v o="$other" -v st="$((steal1 - BG_STEAL0))" -v a="$BG_T0" -v b="$t1" -v hz="$CLK_TCK" -v n="$NCPU" \
    'BEGIN{ cap=(b-a)*hz*n; if (cap>0) printf "%.0f", 100*(o+st)/cap; else print 0 }'
}

# self_child_ticks: CPU of this shell's reaped children (wrk, via timeout).
self_child_ticks() {
  local -a f
  read -ra f <<<"$(stat_fields "$$")"
  echo $((f[13] + f[14]))
}

# ------------------------------------------------------------------- ports
NEXT_PORT=$BASE_PORT
PORT=
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alloc_port() {
  local tries=0
  while port_open "$NEXT_PORT"; do
    NEXT_PORT=$((NEXT_PORT + 1))
    ((++tries < 200)) || die "no free port found from $BASE_PORT (set BASE_PORT)"
  done
  PORT=$NEXT_PORT
  NEXT_PORT=$((NEXT_PORT + 1))
}

# wait_port PORT PID NAME LOG: wait until PORT accepts; fail if PID dies first.
wait_port() {
  local port=$1 pid=$2 name=$3 logf=$4 i
  for ((i = 0; i < 300; i++)); do
    if ! alive "$pid"; then
      die "$name exited while starting; last lines of its log:
$(tail -n 20 "$logf" 2>/dev/null)"
    fi
    port_open "$port" && return 0
    sleep 0.05
  done
  die "$name did not open 127.0.0.1:$port within 15 s; last lines of its log:
$(tail -n 20 "$logf" 2>/dev/null)"
}

mkdir -p "$WORK/bin"
if [[ $SPLIT == cgroup ]]; then cg_setup; fi # before anything starts: fail early
log "arrangement: $(arrangement)"

# ------------------------------------------------------ helpers to measure
log "building the Go helpers (goproxy/, sse/, gorelay/)"
(cd "$BENCH_DIR/goproxy" && "$GO" build -trimpath -o "$WORK/bin/goproxy" .) >"$WORK/build.log" 2>&1 ||
  die "go build of goproxy failed:
$(tail -n 20 "$WORK/build.log")"
(cd "$BENCH_DIR/sse" && "$GO" build -trimpath -o "$WORK/bin/sse" .) >>"$WORK/build.log" 2>&1 ||
  die "go build of sse failed:
$(tail -n 20 "$WORK/build.log")"
(cd "$BENCH_DIR/gorelay" && "$GO" build -trimpath -o "$WORK/bin/gorelay" .) >>"$WORK/build.log" 2>&1 ||
  die "go build of gorelay failed:
$(tail -n 20 "$WORK/build.log")"
SSE_BIN=$WORK/bin/sse
GOPROXY_BIN=$WORK/bin/goproxy
GORELAY_BIN=$WORK/bin/gorelay
export BENCH_PASSWORD # read by goproxy and by the sse client commands
AUTH_GOOD="Authorization: Basic $(printf '%s:%s' "$BENCH_USER" "$BENCH_PASSWORD" | base64 -w0)"
AUTH_BAD="Authorization: Basic $(printf '%s:%s' "$BENCH_USER" "$WRONG_PASSWORD" | base64 -w0)"

CADDY_HASH=
CADDY_DIRECTIVE=basicauth
if uses caddy; then
  log "hashing the password for caddy (caddy hash-password, bcrypt)"
  CADDY_HASH=$(timeout --foreground 60 caddy hash-password --plaintext "$BENCH_PASSWORD") ||
    die "caddy hash-password failed"
  # Caddy 2.8 renamed basicauth to basic_auth (the old name is still accepted there).
  cv=$(caddy version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+' | head -n1 || true)
  if [[ -n $cv ]] && awk -v v="$cv" 'BEGIN{split(v,a,"."); exit !(a[1]>2 || (a[1]==2 && a[2]>=8))}'; then
    CADDY_DIRECTIVE=basic_auth
  fi
fi

# ---------------------------------------------------------------- upstreams
alloc_port; UP_PORT=$PORT
alloc_port; UP_STATUS_PORT=$PORT
alloc_port; SSE_PORT=$PORT
# When run as root, nginx would switch its workers to "nobody", who cannot
# read the private work dir; keep them on the invoking user instead.
NGINX_USER_LINE=""
[[ $(id -u) == 0 ]] && NGINX_USER_LINE="user root;"

nginx_temp_paths() { # nginx_temp_paths DIR: keep nginx's temp files in DIR
  local d=$1
  printf '    client_body_temp_path %s/body;\n    proxy_temp_path %s/proxy;\n' "$d" "$d"
  printf '    fastcgi_temp_path %s/fastcgi;\n    uwsgi_temp_path %s/uwsgi;\n    scgi_temp_path %s/scgi;\n' "$d" "$d" "$d"
}

mkdir -p "$WORK/upstream"
cat >"$WORK/upstream/nginx.conf" <<EOF
# fast upstream: 1 worker, tiny fixed answer, no logging
$NGINX_USER_LINE
worker_processes 1;
daemon off;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections $MAX_CONNS; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
$(nginx_temp_paths "$WORK/upstream")
    default_type text/plain;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:$UP_STATUS_PORT;
        location / { stub_status; }
    }
}
EOF
log "starting the upstreams: nginx on 127.0.0.1:$UP_PORT, streaming (sse serve) on 127.0.0.1:$SSE_PORT"
start_bg "$WORK/upstream/stderr.log" "${MODEL[@]}" nginx -p "$WORK/upstream/" -c "$WORK/upstream/nginx.conf" -e "$WORK/upstream/error.log"
UP_PID=$LAST_PID
wait_port "$UP_PORT" "$UP_PID" "upstream nginx" "$WORK/upstream/error.log"
wait_port "$UP_STATUS_PORT" "$UP_PID" "upstream nginx (status)" "$WORK/upstream/error.log"
cg_check "$UP_PID" model "upstream nginx"
start_bg "$WORK/sse-upstream.log" "${MODEL[@]}" "$SSE_BIN" serve -listen "127.0.0.1:$SSE_PORT" -events 10 -interval 100ms
SSE_PID=$LAST_PID
wait_port "$SSE_PORT" "$SSE_PID" "streaming upstream" "$WORK/sse-upstream.log"
cg_check "$SSE_PID" model "streaming upstream"

# upstream_requests: the upstream nginx's request counter (each read adds 1).
upstream_requests() {
  local fd line n=
  exec {fd}<>"/dev/tcp/127.0.0.1/$UP_STATUS_PORT" || die "cannot reach the upstream's stub_status"
  printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
  while IFS= read -r -t 5 line <&"$fd"; do
    if [[ $line == *"accepts handled requests"* ]]; then
      IFS= read -r -t 5 line <&"$fd"
      read -r _ _ n _ <<<"$line"
      break
    fi
  done
  exec {fd}<&-
  is_uint "${n:-x}" || die "cannot parse the upstream's stub_status"
  echo "$n"
}

# ------------------------------------------------------------------ targets
# start_target NAME UPSTREAM(host:port): start NAME in front of UPSTREAM.
# Sets T_PID (empty for direct) and T_URL (base URL, no trailing slash).
T_PID=
T_URL=
start_target() {
  local name=$1 up=$2 dir port logf
  if [[ $name == direct ]]; then
    T_PID=
    T_URL="http://$up"
    return
  fi
  alloc_port
  port=$PORT
  dir="$WORK/$name-$port"
  mkdir -p "$dir"
  logf="$dir/stderr.log"
  case $name in
  nginx | nginx-auto | nginx-defaults)
    local workers=1 streaming
    [[ $name == nginx-auto ]] && workers=auto
    streaming="    proxy_buffering off;               # stream responses (SSE), as nginx's docs advise
    proxy_request_buffering off;       # stream request bodies too"
    [[ $name == nginx-defaults ]] && streaming="    # nginx defaults: proxy_buffering on, proxy_request_buffering on"
    printf '%s:{PLAIN}%s\n' "$BENCH_USER" "$BENCH_PASSWORD" >"$dir/htpasswd"
    cat >"$dir/nginx.conf" <<EOF
$NGINX_USER_LINE
worker_processes $workers;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log crit;         # "error" would log every failed login (see README)
events { worker_connections $MAX_CONNS; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_max_body_size 0;            # the large-body case sends 64 MiB
$(nginx_temp_paths "$dir")

    upstream up {
        server $up;
        keepalive $POOL;               # idle keep-alive connections to the upstream
        keepalive_requests 1000000;
    }
    proxy_http_version 1.1;            # needed for upstream keep-alive ...
    proxy_set_header Connection "";    # ... and so is clearing Connection
    proxy_set_header Authorization ""; # do not pass the credentials upstream
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Forwarded-Host \$host;
$streaming

    server {
        listen 127.0.0.1:$port;
        auth_basic "bench";
        auth_basic_user_file $dir/htpasswd;   # {PLAIN}: no hashing cost
        location / { proxy_pass http://up; }
    }
}
EOF
    start_bg "$logf" "${SIDECAR[@]}" nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
    ;;
  haproxy | haproxy-defaults)
    local nodelay="    option http-no-delay               # no MSG_MORE: send each chunk at once (SSE; see README)"
    [[ $name == haproxy-defaults ]] && nodelay="    # haproxy defaults: MSG_MORE may hold small chunks for up to ~200 ms"
    cat >"$dir/haproxy.cfg" <<EOF
global
    maxconn $HAPROXY_MAXCONN                  # as nginx's 20000, or what the open-files limit allows (2 fds each)
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 75s
$nodelay
userlist benchusers
    user $BENCH_USER insecure-password $BENCH_PASSWORD
frontend fe
    bind 127.0.0.1:$port
    http-request auth realm bench unless { http_auth(benchusers) }
    http-request del-header Authorization
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend be
backend be
    http-reuse always                  # share idle keep-alive connections to the upstream
    server up $up
EOF
    start_bg "$logf" "${SIDECAR[@]}" haproxy -db -f "$dir/haproxy.cfg"
    ;;
  caddy)
    cat >"$dir/Caddyfile" <<EOF
{
	admin off
	auto_https off
	log {
		level ERROR
	}
}
http://127.0.0.1:$port {
	$CADDY_DIRECTIVE {
		$BENCH_USER $CADDY_HASH
	}
	reverse_proxy $up {
		header_up -Authorization
		transport http {
			keepalive_idle_conns_per_host $POOL
		}
	}
}
EOF
    mkdir -p "$dir/home"
    start_bg "$logf" env HOME="$dir/home" XDG_CONFIG_HOME="$dir/home" XDG_DATA_HOME="$dir/home" \
      "${SIDECAR[@]}" caddy run --adapter caddyfile --config "$dir/Caddyfile"
    ;;
  go-stdlib)
    start_bg "$logf" "${SIDECAR[@]}" "$GOPROXY_BIN" -listen "127.0.0.1:$port" -upstream "http://$up" \
      -user "$BENCH_USER" -pool "$POOL"
    ;;
  go-relay)
    start_bg "$logf" "${SIDECAR[@]}" "$GORELAY_BIN" -listen "127.0.0.1:$port" -upstream "$up"
    ;;
  warden | warden-b)
    alloc_port
    local bin=$WARDEN_BIN extra=$WARDEN_ENV
    if [[ $name == warden-b ]]; then bin=$WARDEN_B_BIN extra=$WARDEN_B_ENV; fi
    # WARDEN_MAX_CONNS as nginx's worker_connections.
    # shellcheck disable=SC2086 # extra is a list of VAR=value words
    start_bg "$logf" env WARDEN_LISTEN="127.0.0.1:$port" WARDEN_UPSTREAM="http://$up" \
      WARDEN_ADMIN_LISTEN="127.0.0.1:$PORT" WARDEN_PASSWORD="$BENCH_PASSWORD" \
      WARDEN_USERNAME="$BENCH_USER" WARDEN_LOG_LEVEL=warn WARDEN_AUTH_FAILURE_LIMIT=0 \
      WARDEN_MAX_CONNS=20000 $extra "${SIDECAR[@]}" "$bin"
    ;;
  esac
  T_PID=$LAST_PID
  wait_port "$port" "$T_PID" "$name" "$logf"
  cg_check "$T_PID" sidecar "$name"
  T_URL="http://127.0.0.1:$port"
}

stop_target() {
  if [[ -n $T_PID ]]; then stop_tree "$T_PID"; fi
  T_PID=
}

# check NAME URL WANT [flags...]: one GET with the sse client; fail loudly.
check() {
  local name=$1 url=$2 wantc=$3 out
  shift 3
  out=$(timeout --foreground 30 "${LOAD[@]}" "$SSE_BIN" check -url "$url" -user "$BENCH_USER" -want "$wantc" -timeout 20s "$@" 2>&1) ||
    die "$name: sanity check failed (wanted HTTP $wantc from $url): $out"
  echo "$out"
}

kv() { # kv KEY LINE: the value of KEY=value in LINE
  local re="(^| )$1=([^ ]*)"
  [[ $2 =~ $re ]] || die "no '$1' in: $2"
  echo "${BASH_REMATCH[2]}"
}

# run_wrk OUTFILE SECONDS AUTHHEADER URL
run_wrk() {
  local out=$1 secs=$2 hdr=$3 url=$4
  timeout --foreground -k 5 $((secs + 30)) "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s --latency \
    -s "$BENCH_DIR/wrk-report.lua" -H "$hdr" "$url" >"$out" 2>&1 ||
    die "wrk failed against $url:
$(tail -n 20 "$out")"
  grep -q '^BENCH ' "$out" || die "wrk printed no summary for $url:
$(tail -n 20 "$out")"
}

# ------------------------------------------------------------ measurements
declare -A RPS P50 P99 CPU UPCPU RSS ERRS PROCS BG WRKCPU
declare -A S_RPS S_CPU S_HITS S_NON401 COLD S_BG
declare -A SSE_HDR SSE_FIRST SSE_LAST SSE_GAP SSE_VERDICT
declare -A GET_MBS POST_MBS
ROUND=1

# The helpers below reach the result arrays by name (namerefs).
# shellcheck disable=SC2178,SC2034
# put ARRAY TARGET VALUE: store VALUE for TARGET in the current round.
put() {
  local -n arr_=$1
  arr_["$2#$ROUND"]=$3
}
# agg ARRAY TARGET median|min|max: over the rounds that stored a value.
# shellcheck disable=SC2178
agg() {
  local -n arr_=$1
  local r
  local -a vals=()
  for ((r = 1; r <= ROUNDS; r++)); do
    if [[ -n ${arr_["$2#$r"]:-} ]]; then vals+=("${arr_["$2#$r"]}"); fi
  done
  ((${#vals[@]})) || return 0
  printf '%s\n' "${vals[@]}" | sort -g | awk -v how="$3" '{a[NR]=$1}
    END{ if (how=="max") print a[NR]; else if (how=="min") print a[1]; else print a[int((NR+1)/2)] }'
}
# finalize TARGET: the reported value of each small-request/storm metric.
# (SC2004: a_ names an associative array, whose keys need the $.)
# shellcheck disable=SC2178,SC2034,SC2004
finalize() {
  local t=$1 m
  for m in RPS P50 P99 CPU UPCPU WRKCPU S_RPS S_CPU COLD; do
    local -n a_=$m
    a_[$t]=$(agg "$m" "$t" median)
    unset -n a_
  done
  for m in ERRS RSS BG S_HITS S_NON401 S_BG; do
    local -n a_=$m
    a_[$t]=$(agg "$m" "$t" max)
    unset -n a_
  done
  CPU_RANGE[$t]="$(agg CPU "$t" min)–$(agg CPU "$t" max)"
  S_CPU_RANGE[$t]="$(agg S_CPU "$t" min)–$(agg S_CPU "$t" max)"
  RPS_RANGE[$t]="$(agg RPS "$t" min)–$(agg RPS "$t" max)"
}
declare -A CPU_RANGE S_CPU_RANGE RPS_RANGE

per_req() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n }'; }
rate() { awk -v n="$1" -v us="$2" 'BEGIN{ if (us>0) printf "%.0f", n/(us/1e6); else print 0 }'; }
ms_of_us() { awk -v v="$1" 'BEGIN{printf "%.2f", v/1000}'; }
mib_of_kib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

# measure_rps NAME: the small-request and 401-storm cases.
measure_rps() {
  local name=$1 line n p0 p1 u0 u1 s0 s1 w0 w1
  local -a pids
  start_target "$name" "127.0.0.1:$UP_PORT"
  log "$name: listening at $T_URL"
  if noauth "$name"; then
    check "$name" "$T_URL/" 200 >/dev/null
  else
    line=$(check "$name" "$T_URL/" 200)
    put COLD "$name" "$(kv elapsed_ms "$line")"
    BENCH_PASSWORD=$WRONG_PASSWORD check "$name" "$T_URL/" 401 >/dev/null
    check "$name" "$T_URL/" 401 -nocreds >/dev/null
  fi

  if has_case small; then
    if ((WARMUP > 0)); then run_wrk "$WORK/$name.warmup.txt" "$WARMUP" "$AUTH_GOOD" "$T_URL/"; fi

    log "$name: ${DURATION}s with good credentials (wrk -t$THREADS -c$CONNS)"
    bg_start
    p0=$(tree_ticks "$T_PID"); u0=$(tree_ticks "$UP_PID"); w0=$(self_child_ticks)
    run_wrk "$WORK/$name.valid.txt" "$DURATION" "$AUTH_GOOD" "$T_URL/"
    w1=$(self_child_ticks); p1=$(tree_ticks "$T_PID"); u1=$(tree_ticks "$UP_PID")
    put BG "$name" "$(bg_pct)"
    line=$(grep '^BENCH ' "$WORK/$name.valid.txt")
    n=$(kv requests "$line")
    put RPS "$name" "$(rate "$n" "$(kv duration_us "$line")")"
    put P50 "$name" "$(ms_of_us "$(kv p50_us "$line")")"
    put P99 "$name" "$(ms_of_us "$(kv p99_us "$line")")"
    put ERRS "$name" $(($(kv err_connect "$line") + $(kv err_read "$line") + $(kv err_write "$line") + $(kv err_status "$line") + $(kv err_timeout "$line")))
    put UPCPU "$name" "$(per_req $((u1 - u0)) "$n")"
    put WRKCPU "$name" "$(awk -v t=$((w1 - w0)) -v hz="$CLK_TCK" -v us="$(kv duration_us "$line")" 'BEGIN{printf "%.0f", 100*t/hz/(us/1e6)}')"
    if [[ -n $T_PID ]]; then put CPU "$name" "$(per_req $((p1 - p0)) "$n")"; fi
  fi

  if ! noauth "$name" && has_case storm; then
    log "$name: ${STORM_DURATION}s 401 storm (wrong password)"
    bg_start
    p0=$(tree_ticks "$T_PID"); s0=$(upstream_requests)
    run_wrk "$WORK/$name.storm.txt" "$STORM_DURATION" "$AUTH_BAD" "$T_URL/"
    p1=$(tree_ticks "$T_PID"); s1=$(upstream_requests)
    put S_BG "$name" "$(bg_pct)"
    line=$(grep '^BENCH ' "$WORK/$name.storm.txt")
    n=$(kv requests "$line")
    put S_RPS "$name" "$(rate "$n" "$(kv duration_us "$line")")"
    put S_CPU "$name" "$(per_req $((p1 - p0)) "$n")"
    put S_HITS "$name" $((s1 - s0 - 1)) # minus the second stub_status read itself
    put S_NON401 "$name" $((n - $(kv err_status "$line")))
    # wrk counts any 4xx/5xx as a status error: confirm the answer is a 401
    BENCH_PASSWORD=$WRONG_PASSWORD check "$name" "$T_URL/" 401 >/dev/null
  fi
  if [[ $name != direct ]]; then
    mapfile -t pids < <(proc_tree "$T_PID")
    put RSS "$name" "$(mib_of_kib "$(hwm_kib "${pids[@]}")")"
    PROCS[$name]=${#pids[@]}
  fi
  stop_target
  log "$name: ${RPS[$name#$ROUND]:-n/a} req/s; proxy ${CPU[$name#$ROUND]:-n/a} CPU-µs/req; 401 storm ${S_RPS[$name#$ROUND]:-n/a}/s"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{ if (NR) print a[int((NR+1)/2)] }'; }

# probe_streams NAME BASEURL: SSE_REPS probes of BASEURL/sse.
probe_streams() {
  local name=$1 base=$2 i line
  local -a hdr=() first=() last=() gap=() verdicts=()
  for ((i = 0; i < SSE_REPS; i++)); do
    line=$(timeout --foreground 30 "${LOAD[@]}" "$SSE_BIN" probe -url "$base/sse" -user "$BENCH_USER" -timeout 20s 2>&1) ||
      die "$name: SSE probe failed: $line"
    hdr+=("$(kv headers_ms "$line")")
    first+=("$(kv first_ms "$line")")
    last+=("$(kv last_ms "$line")")
    gap+=("$(kv min_gap_ms "$line")")
    verdicts+=("$(kv verdict "$line")")
  done
  SSE_HDR[$name]=$(median "${hdr[@]}")
  SSE_FIRST[$name]=$(median "${first[@]}")
  SSE_LAST[$name]=$(median "${last[@]}")
  SSE_GAP[$name]=$(printf '%s\n' "${gap[@]}" | sort -n | head -n1)
  SSE_VERDICT[$name]=$(printf '%s\n' "${verdicts[@]}" | sort -u | paste -sd/ -)
}

# measure_streams NAME: the SSE and large-body cases.
measure_streams() {
  local name=$1 line
  start_target "$name" "127.0.0.1:$SSE_PORT"
  check "$name" "$T_URL/" 200 >/dev/null # also pays Caddy's one-off bcrypt before any timing
  if has_case sse; then
    log "$name: SSE x$SSE_REPS"
    probe_streams "$name" "$T_URL"
  fi
  if has_case bodies; then
    log "$name: GET and POST of $BODY_BYTES bytes x$BODY_REPS"
    line=$(timeout --foreground 300 "${LOAD[@]}" "$SSE_BIN" get -url "$T_URL/blob?bytes=$BODY_BYTES" -bytes "$BODY_BYTES" \
      -reps "$BODY_REPS" -user "$BENCH_USER" -timeout 240s 2>&1) || die "$name: large GET failed: $line"
    GET_MBS[$name]=$(kv median_mbs "$line")
    line=$(timeout --foreground 300 "${LOAD[@]}" "$SSE_BIN" post -url "$T_URL/sink" -bytes "$BODY_BYTES" \
      -reps "$BODY_REPS" -user "$BENCH_USER" -timeout 240s 2>&1) || die "$name: large POST failed: $line"
    POST_MBS[$name]=$(kv median_mbs "$line")
  fi
  stop_target
}

declare -A F_OK F_PCT F_P50 F_P99 F_MAX F_CPU F_RSS F_PER F_ERRS F_CLI F_BG F_THR
declare -A I_OK I_OPEN I_RSS0 I_PEAK I_PER I_FRESH I_BG

# dash_if_none VALUE: VALUE, or a dash for the client's "-" (nothing measured).
dash_if_none() { if [[ $1 == - ]]; then echo "—"; else echo "$1"; fi; }

# measure_fanout NAME: STREAMS token streams at once through NAME (case fanout).
measure_fanout() {
  local name=$1 line p0 p1 w0 w1 th0 th1 r0=0 peak secs got want
  local -a pids=()
  start_target "$name" "127.0.0.1:$SSE_PORT"
  check "$name" "$T_URL/" 200 >/dev/null # also pays Caddy's one-off bcrypt before any timing
  if [[ -n $T_PID ]]; then
    mapfile -t pids < <(proc_tree "$T_PID")
    r0=$(rss_kib "${pids[@]}")
  fi
  # the client's own bound: the 1 s start-up, the streams, and 30 s to spare
  secs=$(awk -v n="$EVENTS_PER_STREAM" -v s="$STREAM_INTERVAL_S" 'BEGIN{printf "%d", 31 + (n-1)*s}')
  log "$name: $STREAMS SSE streams at once, $EVENTS_PER_STREAM events each, $STREAM_INTERVAL apart"
  bg_start
  th0=$(cg_throttle)
  p0=$(tree_ticks "$T_PID"); w0=$(self_child_ticks)
  line=$(timeout --foreground -k 5 $((secs + 10)) "${LOAD[@]}" "$SSE_BIN" fanout -url "$T_URL/sse" -user "$BENCH_USER" \
    -streams "$STREAMS" -events "$EVENTS_PER_STREAM" -interval "$STREAM_INTERVAL" -ramp 1s -timeout "${secs}s" \
    2>"$WORK/$name.fanout.err") || die "$name: the fanout client failed: $(tail -n 5 "$WORK/$name.fanout.err")"
  w1=$(self_child_ticks); p1=$(tree_ticks "$T_PID"); th1=$(cg_throttle)
  F_BG[$name]=$(bg_pct)
  echo "$line" >"$WORK/$name.fanout.txt"
  got=$(kv events "$line")
  want=$(kv expected "$line")
  F_OK[$name]=$(kv ok "$line")
  # rounded down, so that 100 means every event
  F_PCT[$name]=$(awk -v g="$got" -v w="$want" 'BEGIN{ if (g==w) print 100; else printf "%.2f", int(10000*g/w)/100 }')
  F_P50[$name]=$(dash_if_none "$(kv late_p50_ms "$line")")
  F_P99[$name]=$(dash_if_none "$(kv late_p99_ms "$line")")
  F_MAX[$name]=$(dash_if_none "$(kv late_max_ms "$line")")
  F_ERRS[$name]=$(kv errors "$line")
  F_CLI[$name]=$(awk -v t=$((w1 - w0)) -v hz="$CLK_TCK" -v ms="$(kv elapsed_ms "$line")" 'BEGIN{ if (ms>0) printf "%.0f", 100*t/hz/(ms/1e3); else print 0 }')
  if [[ -n $T_PID ]]; then
    F_CPU[$name]=$(per_req $((p1 - p0)) "$got")
    mapfile -t pids < <(proc_tree "$T_PID")
    peak=$(hwm_kib "${pids[@]}")
    F_RSS[$name]=$(mib_of_kib "$peak")
    F_PER[$name]=$(awk -v p="$peak" -v r="$r0" -v n="$STREAMS" 'BEGIN{printf "%.1f", (p-r)/n}')
    if [[ -n $CG_QUOTA ]]; then
      F_THR[$name]=$(awk -v a="$th0" -v b="$th1" 'BEGIN{split(a,x," "); split(b,y," "); p=y[1]-x[1];
        if (p>0) printf "%.0f", 100*(y[2]-x[2])/p; else print 0}')
    fi
  fi
  stop_target
  log "$name: ${F_OK[$name]}/$STREAMS streams whole (started over $(kv start_spread_ms "$line") ms), ${F_PCT[$name]}% of the events, lateness p99 ${F_P99[$name]} ms"
  if ((${F_ERRS[$name]} > 0)); then log "$name: $(kv err_connect "$line") connect, $(kv err_status "$line") status, $(kv err_read "$line") read, $(kv err_timeout "$line") timeout, $(kv err_short "$line") short streams; $(head -n 3 "$WORK/$name.fanout.err" | paste -sd' ' -)"; fi
}

# measure_idle NAME: IDLE_CONNS keep-alive connections held idle through NAME
# (case idle), and a fresh request while they are held.
measure_idle() {
  local name=$1 out cpid line r0=0 peak fresh i
  local -a pids=()
  start_target "$name" "127.0.0.1:$UP_PORT"
  check "$name" "$T_URL/" 200 >/dev/null
  if [[ -n $T_PID ]]; then
    mapfile -t pids < <(proc_tree "$T_PID")
    r0=$(rss_kib "${pids[@]}")
  fi
  out="$WORK/$name.idle.txt"
  log "$name: $IDLE_CONNS keep-alive connections, one request each, then held idle for ${IDLE_HOLD}s"
  bg_start
  # Bounded three ways: the client's -timeout, timeout(1), and stop_tree below.
  start_bg "$out" timeout -k 5 $((IDLE_HOLD + 100)) "${LOAD[@]}" "$SSE_BIN" idle -url "$T_URL/" -user "$BENCH_USER" \
    -conns "$IDLE_CONNS" -hold "${IDLE_HOLD}s" -timeout "$((IDLE_HOLD + 90))s"
  cpid=$LAST_PID
  for ((i = 0; i < 900; i++)); do # the client prints "ready" once it holds them all; 90 s at most
    grep -q '^ready ' "$out" && break
    alive "$cpid" || break
    sleep 0.1
  done
  grep -q '^ready ' "$out" || die "$name: the idle client did not open its connections:
$(tail -n 5 "$out")"
  # A new client while they are held; it must be answered within the hold.
  if fresh=$(timeout --foreground -k 2 "$IDLE_HOLD" "${LOAD[@]}" "$SSE_BIN" check -url "$T_URL/" -user "$BENCH_USER" \
    -want 200 -timeout "$((IDLE_HOLD - 1))s" 2>&1); then
    I_FRESH[$name]="ok, $(kv elapsed_ms "$fresh") ms"
  else
    I_FRESH[$name]="FAILED"
    log "$name: the fresh request failed while the connections were held: $fresh"
  fi
  for ((i = 0; i < (IDLE_HOLD + 100) * 10; i++)); do # the client ends after the hold
    alive "$cpid" || break
    sleep 0.1
  done
  stop_tree "$cpid"
  I_BG[$name]=$(bg_pct)
  line=$(grep '^idle ' "$out") || die "$name: the idle client printed no summary:
$(tail -n 5 "$out")"
  I_OK[$name]=$(kv ok "$line")
  I_OPEN[$name]=$(kv still_open "$line")
  if [[ -n $T_PID ]]; then
    mapfile -t pids < <(proc_tree "$T_PID")
    peak=$(hwm_kib "${pids[@]}")
    I_RSS0[$name]=$(mib_of_kib "$r0")
    I_PEAK[$name]=$(mib_of_kib "$peak")
    I_PER[$name]=$(awk -v p="$peak" -v r="$r0" -v n="$IDLE_CONNS" 'BEGIN{printf "%.1f", (p-r)/n}')
  fi
  stop_target
  log "$name: ${I_OK[$name]}/$IDLE_CONNS answered, ${I_OPEN[$name]} still open after ${IDLE_HOLD}s; ${I_PER[$name]:-n/a} KiB each; fresh request ${I_FRESH[$name]}"
  if (($(kv errors "$line") > 0)); then log "$name: idle client errors: $(grep -v '^ready \|^idle ' "$out" | head -n 3 | paste -sd' ' -)"; fi
}

# ------------------------------------------------------------------- run
# Other work on the machine skews every number: sample it for a second, and
# optionally wait (IDLE_WAIT seconds at most) for it to go away.
idle_deadline=$((SECONDS + IDLE_WAIT))
while :; do
  bg_start
  sleep 1
  BG_BEFORE=$(bg_pct)
  ((BG_BEFORE <= BG_LIMIT || SECONDS >= idle_deadline)) && break
  log "other processes use ${BG_BEFORE}% of the CPU; waiting for them (IDLE_WAIT=$IDLE_WAIT)"
  sleep 4
done
if ((BG_BEFORE > BG_LIMIT)); then
  log "WARNING: other processes use ${BG_BEFORE}% of the machine's CPU; results will be noisy (see the bg CPU % columns)"
fi

START_S=$SECONDS
log "cases: $CASES"
log "pinning: $(if ((PIN)); then echo "wrk/probes on CPU $LOAD_CPUS, proxy+upstreams on CPU $SERVER_CPUS"; else echo off; fi)"
if has_case small || has_case storm; then
  log "small requests and 401 storm: $TARGETS"
  for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    ((ROUNDS == 1)) || log "round $ROUND of $ROUNDS"
    for t in $TARGETS; do
      if noauth "$t" && ! has_case small; then continue; fi # no storm for them
      measure_rps "$t"
    done
  done
  for t in $TARGETS; do finalize "$t"; done
fi
if [[ -n $STREAM_TARGETS ]]; then
  log "streaming and large bodies: $STREAM_TARGETS"
  for t in $STREAM_TARGETS; do measure_streams "$t"; done
fi
if has_case fanout; then
  log "token streams at scale: $TARGETS"
  for t in $TARGETS; do measure_fanout "$t"; done
fi
if has_case idle; then
  log "idle connections: $TARGETS"
  for t in $TARGETS; do measure_idle "$t"; done
fi
ELAPSED=$((SECONDS - START_S))

# ---------------------------------------------------------------- report
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN{ if (a=="" || b=="" || b+0==0) print "—"; else printf "%.2f\n", a/b }'; }
or_dash() { if [[ -n ${1:-} ]]; then echo "$1"; else echo "—"; fi; }

tool_versions() {
  local v=()
  v+=("$(nginx -v 2>&1 | sed 's/^nginx version: //' || true)")
  if uses haproxy; then v+=("haproxy $({ haproxy -v 2>/dev/null || true; } | awk 'NR==1{print $3}')"); fi
  if uses caddy; then v+=("caddy $({ caddy version 2>/dev/null || true; } | awk 'NR==1{print $1}')"); fi
  v+=("wrk $({ wrk -v 2>&1 || true; } | awk 'NR==1{print $2}')")
  v+=("$("$GO" version | awk '{print $3}')")
  if uses warden; then v+=("warden: $(basename "$WARDEN_BIN")"); fi
  local IFS=, joined
  joined="${v[*]}"
  echo "${joined//,/, }"
}

target_config() {
  case $1 in
  direct) echo "no proxy" ;;
  nginx) echo "proxy_buffering off, proxy_request_buffering off (nginx docs' advice for streaming)" ;;
  nginx-auto) echo "as nginx, worker_processes auto" ;;
  nginx-defaults) echo "nginx defaults: proxy_buffering on, proxy_request_buffering on" ;;
  haproxy) echo "option http-no-delay (haproxy docs: for interactive streams)" ;;
  haproxy-defaults) echo "haproxy defaults (MSG_MORE)" ;;
  caddy) echo "defaults (reverse_proxy flushes text/event-stream at once)" ;;
  go-stdlib) echo "defaults (ReverseProxy flushes text/event-stream at once)" ;;
  go-relay) echo "a bare TCP relay: Go's floor, not a proxy" ;;
  warden) echo "defaults${WARDEN_ENV:+, $WARDEN_ENV}" ;;
  warden-b) echo "$(basename "$WARDEN_B_BIN")${WARDEN_B_ENV:+, $WARDEN_B_ENV}" ;;
  esac
}

render() {
  local t cpu_model
  cpu_model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
  echo "# Basic-auth reverse proxies, side by side"
  echo
  echo "- date (UTC): $(date -u '+%Y-%m-%d %H:%M'); the run took ${ELAPSED}s"
  echo "- machine: $NCPU CPUs ($(or_dash "$cpu_model")), Linux $(uname -r); other processes used ${BG_BEFORE}% of the CPU just before the run"
  echo "- tools: $(tool_versions)"
  [[ $CASES == "$ALL_CASES" ]] || echo "- cases: $CASES"
  if has_case small || has_case storm; then
    echo "- load: wrk -t$THREADS -c$CONNS; ${WARMUP}s warm-up, then ${DURATION}s measured with good credentials and ${STORM_DURATION}s with a wrong password$( ((ROUNDS == 1)) || echo "; $ROUNDS rounds, medians shown (errors, RSS and bg CPU: the largest)")"
  fi
  if ((PIN)); then
    echo "- pinning: wrk and the probes on CPU $LOAD_CPUS; the upstreams and the proxy share CPU $SERVER_CPUS"
  else
    echo "- pinning: off (any process may run on any CPU)"
  fi
  echo "- arrangement: $(arrangement)"
  echo "- upstream: nginx, 1 worker, \`return 200 \"ok\\n\"\`; each peer may keep $POOL idle keep-alive connections to it"
  echo "- connection limits: nginx worker_connections $MAX_CONNS, haproxy maxconn $HAPROXY_MAXCONN; open files $NOFILE per process"
  has_case small && render_small
  has_case storm && render_storm
  has_case sse && render_sse
  has_case bodies && render_bodies
  has_case fanout && render_fanout
  has_case idle && render_idle
  return 0
}

render_small() {
  local t
  echo
  echo "## Small requests with good credentials"
  echo
  local rh="" rs=""
  if ((ROUNDS > 1)); then rh=" req/s range | CPU-µs range |"; rs="---|---|"; fi
  echo "| target | req/s | × direct | p50 ms | p99 ms | proxy CPU-µs/req | × nginx | upstream CPU-µs/req | proxy peak RSS MiB | errors | wrk CPU % | bg CPU % |$rh"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|$rs"
  for t in $TARGETS; do
    local rc=""
    ((ROUNDS == 1)) || rc=" ${RPS_RANGE[$t]} | $(if [[ -n ${CPU[$t]:-} ]]; then echo "${CPU_RANGE[$t]}"; else echo "—"; fi) |"
    echo "| $t | ${RPS[$t]} | $(ratio "${RPS[$t]}" "${RPS[direct]:-}") | ${P50[$t]} | ${P99[$t]} | $(or_dash "${CPU[$t]:-}") | $(ratio "${CPU[$t]:-}" "${CPU[nginx]:-}") | ${UPCPU[$t]} | $(or_dash "${RSS[$t]:-}") | ${ERRS[$t]} | ${WRKCPU[$t]} | ${BG[$t]} |$rc"
  done
  echo
  echo "× direct: req/s over direct's (the rig's ceiling). × nginx: CPU-µs/req over nginx's (1 worker). proxy CPU-µs/req: user+system time of the proxy's processes during the measured run over the requests wrk completed; upstream CPU-µs/req: the same for the upstream nginx (for direct, the whole server-side cost). errors: wrk's socket errors and timeouts plus non-2xx answers. wrk CPU %: the load generator's use of its CPU (near 100: the client is the limit). bg CPU %: other processes' and the hypervisor's share of the whole machine during the run (above $BG_LIMIT, distrust the row)."
  if want nginx-auto && [[ -n ${PROCS[nginx-auto]:-} ]]; then
    echo
    echo "nginx-auto ran $((PROCS[nginx-auto] - 1)) worker process(es)."
  fi
}

render_storm() {
  local t sh="" ss=""
  if ((ROUNDS > 1)); then sh=" CPU-µs range |"; ss="---|"; fi
  echo
  echo "## 401 storm (wrong password)"
  echo
  echo "| target | 401/s | proxy CPU-µs/401 | × nginx | upstream hits | non-401 answers | first good request ms | bg CPU % |$sh"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|$ss"
  for t in $TARGETS; do
    noauth "$t" && continue
    echo "| $t | ${S_RPS[$t]} | ${S_CPU[$t]} | $(ratio "${S_CPU[$t]}" "${S_CPU[nginx]:-}") | ${S_HITS[$t]} | ${S_NON401[$t]} | ${COLD[$t]} | ${S_BG[$t]} |$( ((ROUNDS == 1)) || echo " ${S_CPU_RANGE[$t]} |")"
  done
  echo
  echo "upstream hits: requests the upstream counted during the storm (must be 0). non-401 answers: answers that were not 4xx/5xx (must be 0; a 401 with WWW-Authenticate is checked separately). first good request ms: the first authorised request after start-up (Caddy pays its bcrypt there; it caches the outcome, for wrong passwords too)."
}

render_sse() {
  local t
  echo
  echo "## Streaming (SSE: 10 events 100 ms apart, the first at once)"
  echo
  echo "| target | headers ms | first event ms | last event ms | min gap ms | verdict | configuration |"
  echo "|---|---:|---:|---:|---:|---|---|"
  for t in $STREAM_TARGETS; do
    echo "| $t | ${SSE_HDR[$t]} | ${SSE_FIRST[$t]} | ${SSE_LAST[$t]} | ${SSE_GAP[$t]} | ${SSE_VERDICT[$t]} | $(target_config "$t") |"
  done
  echo
  echo "Median of $SSE_REPS probes; min gap is the smallest over all of them. streamed: the first event within 50 ms and the events spaced as sent; buffered: all arrived together; partial: in between (some held, then sent in bursts)."
}

render_bodies() {
  local t
  echo
  echo "## Large bodies ($(awk -v b="$BODY_BYTES" 'BEGIN{printf "%g", b/1048576}') MiB)"
  echo
  echo "| target | GET MB/s | × direct | POST MB/s | × direct |"
  echo "|---|---:|---:|---:|---:|"
  for t in $STREAM_TARGETS; do
    echo "| $t | ${GET_MBS[$t]} | $(ratio "${GET_MBS[$t]}" "${GET_MBS[direct]:-}") | ${POST_MBS[$t]} | $(ratio "${POST_MBS[$t]}" "${POST_MBS[direct]:-}") |"
  done
  echo
  echo "MB = 10^6 bytes; median of $BODY_REPS transfers each way, one client, no concurrency. GET reads a body the streaming upstream generates; POST sends one that the upstream reads, discards and counts (the count is checked)."
}

render_fanout() {
  local t th="" ts="" tc=""
  if [[ -n $CG_QUOTA ]]; then th=" sidecar throttled % |"; ts="---:|"; fi
  echo
  echo "## Token streams at scale ($STREAMS SSE streams at once, $EVENTS_PER_STREAM events each, $STREAM_INTERVAL apart)"
  echo
  echo "| target | streams ok | events delivered % | lateness p50 ms | p99 ms | max ms | proxy CPU-µs/event | proxy peak RSS MiB | RSS/stream KiB | errors | client CPU % | bg CPU % |$th"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|$ts"
  for t in $TARGETS; do
    [[ -z $CG_QUOTA ]] || tc=" $(or_dash "${F_THR[$t]:-}") |"
    echo "| $t | ${F_OK[$t]} | ${F_PCT[$t]} | ${F_P50[$t]} | ${F_P99[$t]} | ${F_MAX[$t]} | $(or_dash "${F_CPU[$t]:-}") | $(or_dash "${F_RSS[$t]:-}") | $(or_dash "${F_PER[$t]:-}") | ${F_ERRS[$t]} | ${F_CLI[$t]} | ${F_BG[$t]} |$tc"
  done
  echo
  echo "Like an LLM endpoint: many long-lived streams of small events at once (50 ms apart is 20 tokens/s); the streams start evenly over 1 s and each asks the upstream for its events (\`/sse?events=N&interval=D\`). streams ok: streams that got every event and a clean end. lateness: arrival at the client minus the upstream's send time stamped in the event (same clock), over all events; direct is the rig's own. proxy CPU-µs/event: the proxy's CPU time during the run (streams set up included) over the events delivered. RSS/stream KiB: (peak − the proxy's RSS just before) ÷ $STREAMS. errors: streams that failed to connect, got another status, broke off or ended short. client CPU %: the streaming client's use of its CPU.$(if [[ -n $CG_QUOTA ]]; then echo " sidecar throttled %: the share of the proxy group's CFS periods in which it used up its quota."; fi)"
}

render_idle() {
  local t
  echo
  echo "## Idle connections ($IDLE_CONNS keep-alive connections held idle for ${IDLE_HOLD}s)"
  echo
  echo "| target | conns ok | still open after hold | proxy RSS before MiB | proxy peak RSS MiB | KiB/conn | fresh request while held | bg CPU % |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|"
  for t in $TARGETS; do
    echo "| $t | ${I_OK[$t]} | ${I_OPEN[$t]} | $(or_dash "${I_RSS0[$t]:-}") | $(or_dash "${I_PEAK[$t]:-}") | $(or_dash "${I_PER[$t]:-}") | ${I_FRESH[$t]} | ${I_BG[$t]} |"
  done
  echo
  echo "Each connection makes one authorised small request (50 being opened at a time), then stays open without a request for ${IDLE_HOLD}s, as clients that keep connections for later do. conns ok: answered 200. still open: not closed by the proxy at the end of the hold. KiB/conn: (peak RSS − RSS before) ÷ $IDLE_CONNS. fresh request: a new client's request while all are held, with its time."
}

noisy=()
for t in $TARGETS; do
  if ((${BG[$t]:-0} > BG_LIMIT)); then noisy+=("$t"); fi
  if ((${S_BG[$t]:-0} > BG_LIMIT)); then noisy+=("$t(401)"); fi
  if ((${F_BG[$t]:-0} > BG_LIMIT)); then noisy+=("$t(fanout)"); fi
  if ((${I_BG[$t]:-0} > BG_LIMIT)); then noisy+=("$t(idle)"); fi
done
render >"$WORK/results.md"
if ((${#noisy[@]})); then
  printf '\n**Warning:** other processes used more than %s%% of the CPU during: %s. Re-run on an idle machine before trusting those rows.\n' \
    "$BG_LIMIT" "${noisy[*]}" >>"$WORK/results.md"
  log "WARNING: background load during: ${noisy[*]}"
fi
cat "$WORK/results.md"
cp "$WORK/results.md" "$RESULTS"
log "done in ${ELAPSED}s; results written to $RESULTS"
