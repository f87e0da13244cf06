#!/usr/bin/env bash
# image-test.sh: build the Dockerfile as written and prove the image works the
# way it is meant to run: read-only, every capability dropped, non-root, no
# shell, in front of a model server. `make image-test` calls this; CI runs it.
#
# No registry can be reached here, so the two base images the Dockerfile names
# are replaced by local stand-ins under exactly those names
# (offline-base-images.sh; IMAGE_TEST_REAL_BASES=1 pulls the real ones
# instead, where a registry is reachable), and the build runs with
# --pull=never. That proves the Dockerfile's own logic (stages, COPY
# paths, static linking, USER, ENTRYPOINT), not the real bases' contents:
#   golang:1.26                              FROM scratch: this machine's GOROOT
#                                            at /usr/local/go, static busybox as
#                                            /bin/sh, CA bundle, passwd/group
#   gcr.io/distroless/static-debian12:nonroot
#                                            FROM scratch: passwd/group with
#                                            nonroot (65532), CA bundle, tzdata,
#                                            /tmp 1777, like the real one
#
# Then, with podman and everything on 127.0.0.1 (host networking):
#   1. the image: user 65532, entrypoint /warden, under 15 MB, no shell, a
#      static, trimmed, version-stamped binary;
#   2. warden in front of the demo model server: 401 without credentials, 200
#      with them (plain and streamed), /metrics, uid 65532 with no
#      capabilities, a read-only root, the version in the start line, exit 0
#      on SIGTERM;
#   3. wrapper mode (`warden -- CMD ARGS...`), when the source has it: the
#      README's single-image recipe (a model image plus COPY --from of /warden)
#      run the same way; the model server is warden's child without WARDEN_
#      variables, and warden exits with its status.
#
# Needs root and Debian: installs buildah, podman, skopeo, umoci, runc and
# busybox-static with apt-get when they are missing. Images and build caches
# live in their own store, $IMAGE_TEST_STORE (default /var/tmp/warden-image-test),
# never in the machine's default container storage; delete it to start cold.
# Everything else is in a temporary folder removed on exit.
set -euo pipefail
# stand-ins are rebuilt when this script or the one that builds them changes
self=$(cat "$0" "$(dirname "$0")/offline-base-images.sh" | sha256sum | cut -c1-64)
cd "$(dirname "$0")/.."

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
STORE=${IMAGE_TEST_STORE:-/var/tmp/warden-image-test}
IMAGE=localhost/warden:ci
GO_BASE=docker.io/library/golang:1.26               # FROM golang:1.26
DISTROLESS=gcr.io/distroless/static-debian12:nonroot # FROM gcr.io/distroless/...
MAX_BYTES=15000000                                   # "well under 15 MB"
LABEL=warden-image-test                              # on every container started here

t0=${EPOCHREALTIME/./}
elapsed() { local us=$((${EPOCHREALTIME/./} - t0)); printf '%d.%ds' $((us / 1000000)) $((us / 100000 % 10)); }
say() { printf '[image-test %7s] %s\n' "$(elapsed)" "$*"; }
fail() { printf '[image-test %7s] FAIL: %s\n' "$(elapsed)" "$*" >&2; exit 1; }
timings=()
phase_start=$t0
phase_done() { # record how long the phase that just ended took
  local now=${EPOCHREALTIME/./} us
  us=$((now - phase_start)); phase_start=$now
  timings+=("$(printf '%-28s %d.%ds' "$1" $((us / 1000000)) $((us / 100000 % 10)))")
}

[[ $(id -u) == 0 ]] || fail "needs root (apt-get, podman and buildah with their own store)"
command -v apt-get >/dev/null || fail "needs Debian's apt-get to install buildah, podman and skopeo"
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || fail "needs Go on PATH (or at /usr/local/go/bin)"

# --- tools -------------------------------------------------------------------
packages=(buildah podman skopeo umoci runc busybox-static curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq || fail "apt-get update"
  timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]}"
fi
busybox=$(command -v busybox) && file_is_static=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
[[ $file_is_static == *"not a dynamic executable"* ]] || fail "$busybox is not static (install busybox-static)"
phase_done "tools"

# --- private container store and config --------------------------------------
# Images and build caches persist in $STORE so a second run is warm; the state
# of running containers (runroot, podman's database) is per run.
mkdir -p "$STORE/storage" "$STORE/tmp"
exec 9>"$STORE/lock"
flock -w 600 9 || fail "another image-test run holds $STORE/lock"
tmp=$(mktemp -d /tmp/warden-image-test.XXXXXX)
store_ready="" # set once podman and buildah are pointed at $STORE
demo_pid=""
cleanup() {
  local rc=$? i
  set +e
  trap - EXIT INT TERM
  if ((rc != 0)) && [[ -n $store_ready ]]; then
    for c in $(podman ps -a --filter "label=$LABEL" --format '{{.Names}}' 2>/dev/null); do
      echo "--- podman logs $c (last 30 lines)" >&2
      podman logs --tail 30 "$c" >&2 2>&1
    done
  fi
  if ((rc != 0)) && [[ -s $tmp/demo.log ]]; then
    echo "--- demo model server log (last 10 lines)" >&2
    tail -n 10 "$tmp/demo.log" >&2
  fi
  if [[ -n $store_ready ]]; then
    podman ps -a --filter "label=$LABEL" -q 2>/dev/null | xargs -r timeout 60 podman rm -f -t 0 >/dev/null 2>&1
    buildah rm --all >/dev/null 2>&1 # working containers of the stand-in and image builds
    rm -rf "$STORE/storage/libpod"
  fi
  [[ -n $demo_pid ]] && kill "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null
  # conmon's exit commands (podman container cleanup) run on after a container
  # is gone and use $tmp: let them finish, bounded, before removing it.
  for ((i = 0; i < 50; i++)); do pgrep -f -- "$tmp" >/dev/null || break; sleep 0.2; done
  rm -rf "$tmp"
  ((rc == 0)) || echo "image-test: failed (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$tmp/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$STORE/storage"
runroot = "$tmp/run"
EOF
# The settings this kernel needs (docs/packaging-notes.md): runc with
# cgroupfs (crun refuses hybrid cgroups), explicit ulimits, host networking,
# events and logs in files (no journald).
cat >"$tmp/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "host"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$tmp/events.log"
tmp_dir = "$tmp/libpod-run"
volume_path = "$tmp/volumes"
EOF
# Short names resolve to docker.io only, whatever the machine's own
# registries.conf and its drop-ins say; nothing is pulled anyway.
cat >"$tmp/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_STORAGE_CONF=$tmp/storage.conf
export CONTAINERS_CONF=$tmp/containers.conf
export CONTAINERS_REGISTRIES_CONF=$tmp/registries.conf
# buildah keeps RUN --mount=type=cache folders under $TMPDIR: keep them in the store.
export TMPDIR=$STORE/tmp

# podman's database lives in the store (its cleanup processes look for it
# there), but records this run's runroot and tmp_dir: start it afresh. Any
# container left by a run that was killed has no owner now.
rm -rf "$STORE/storage/libpod"
store_ready=1
buildah rm --all >/dev/null 2>&1 || true

if [[ ${IMAGE_TEST_REAL_BASES:-0} == 1 ]]; then
  say "base images: the real ones, pulled as the Dockerfile names them"
  podman pull "$GO_BASE" "$DISTROLESS" >/dev/null || fail "pulling the base images"
else
  source scripts/offline-base-images.sh # stand-ins: no registry here
fi

# --- build the Dockerfile as written ------------------------------------------
say "building the Dockerfile (VERSION=$VERSION)"
timeout 900 buildah bud --isolation chroot --pull=never --layers \
  --build-arg VERSION="$VERSION" -t "$IMAGE" . ||
  fail "buildah bud of ./Dockerfile"
phase_done "build image"

# --- the image: config, size, contents ------------------------------------------
inspect() { podman image inspect --format "$1" "$IMAGE"; }
user=$(inspect '{{.Config.User}}')
entrypoint=$(inspect '{{json .Config.Entrypoint}}')
# shellcheck disable=SC2016 # a Go template, not shell
ports=$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')
[[ $user == 65532 || $user == 65532:65532 ]] || fail "image user is '$user', want 65532:65532"
[[ $entrypoint == '["/warden"]' ]] || fail "image entrypoint is $entrypoint, want [\"/warden\"]"
[[ $ports == *8080/tcp* && $ports == *9901/tcp* ]] || fail "image exposes '$ports', want 8080/tcp and 9901/tcp"
say "image config: user $user, entrypoint $entrypoint, exposes $ports"

timeout 120 skopeo copy --quiet "containers-storage:$IMAGE" "oci:$tmp/oci:ci" || fail "skopeo copy of $IMAGE"
compressed=$(du -sb "$tmp/oci/blobs" | cut -f1) # gzipped layers, config and manifest: what a pull fetches
uncompressed=$(inspect '{{.Size}}')
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
say "image size: $(mb "$uncompressed") uncompressed, $(mb "$compressed") compressed (limit $(mb $MAX_BYTES))"
((uncompressed <= MAX_BYTES)) || fail "image is $(mb "$uncompressed") uncompressed, over $(mb $MAX_BYTES)"

umoci raw unpack --image "$tmp/oci:ci" "$tmp/rootfs" >/dev/null 2>&1 || fail "umoci unpack of $IMAGE"
[[ -x $tmp/rootfs/warden ]] || fail "no executable /warden in the image"
for sh in bin/sh bin/bash bin/busybox usr/bin/sh bin/ash; do
  [[ ! -e $tmp/rootfs/$sh && ! -L $tmp/rootfs/$sh ]] || fail "the image has /$sh"
done
bin=$tmp/rootfs/warden
buildinfo=$(go version -m "$bin") || fail "go version -m /warden"
for want in "build	CGO_ENABLED=0" "build	-trimpath=true"; do
  [[ $buildinfo == *"$want"* ]] || fail "/warden was not built with '$want':"$'\n'"$buildinfo"
done
[[ $(LC_ALL=C ldd "$bin" 2>&1) == *"not a dynamic executable"* ]] || fail "/warden is dynamically linked"
[[ $(go tool nm "$bin" 2>&1) == *"no symbols"* ]] || fail "/warden has a symbol table (built without -s)"
grep -q -a -F "$VERSION" "$bin" || fail "/warden does not contain its version $VERSION"
say "binary: $(mb "$(stat -c %s "$bin")"), static (CGO_ENABLED=0), -trimpath, stripped, holds version $VERSION"
rm -rf "$tmp/rootfs" "$tmp/oci"

shell_out=$(timeout 60 podman run --rm --pull=never --label "$LABEL" --entrypoint /bin/sh "$IMAGE" -c 'echo shell-ran' 2>&1) &&
  fail "podman run --entrypoint /bin/sh succeeded: the image has a shell"
[[ $shell_out != *shell-ran* ]] || fail "a shell ran in the image"
say "no shell: podman run --entrypoint /bin/sh fails (${shell_out%%$'\n'*})"
phase_done "inspect image"

# --- run it hardened in front of the demo model server ------------------------
used_ports=" "
demo_port="" listen_port="" admin_port="" model_port=""
free_port() { # free_port VAR: a TCP port on 127.0.0.1 nobody uses, not handed out before
  local p i
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 30000))
    [[ $used_ports == *" $p "* ]] && continue
    [[ -z $(ss -Htan "( sport = :$p or dport = :$p )") ]] || continue
    used_ports+="$p "
    printf -v "$1" '%s' "$p"
    return
  done
  fail "no free port found"
}

# wait_http URL WANT SECONDS [CONTAINER]: poll until URL answers WANT.
wait_http() {
  local url=$1 want=$2 deadline=$((SECONDS + $3)) ctr=${4:-} code
  while ((SECONDS < deadline)); do
    code=$(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' "$url" || true)
    [[ $code == "$want" ]] && return 0
    if [[ -n $ctr && $(podman inspect --format '{{.State.Running}}' "$ctr" 2>/dev/null) != true ]]; then
      fail "container $ctr exited before $url answered $want"
    fi
    sleep 0.2
  done
  fail "$url did not answer $want within $3 s (last: ${code:-none})"
}

say "starting the demo model server on the host"
CGO_ENABLED=0 go build -trimpath -o "$tmp/demo" ./demo || fail "go build ./demo"
free_port demo_port
"$tmp/demo" -listen "127.0.0.1:$demo_port" >"$tmp/demo.log" 2>&1 &
demo_pid=$!
wait_http "http://127.0.0.1:$demo_port/health" 200 15

password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
export WARDEN_PASSWORD=$password # passed by name to podman: not on any command line
printf 'user = "paperspace:%s"\n' "$password" >"$tmp/auth.curlrc"
printf 'user = "paperspace:wrong-%s"\n' "$password" >"$tmp/wrong.curlrc"
chmod 600 "$tmp"/*.curlrc

# run_hardened NAME IMAGE LISTEN ADMIN UPSTREAM [podman run args...]
run_hardened() {
  local name=$1 image=$2 listen=$3 admin=$4 upstream=$5; shift 5
  timeout 60 podman run -d --pull=never --name "$name" --label "$LABEL" \
    --read-only --read-only-tmpfs=false --cap-drop=ALL --security-opt no-new-privileges \
    --user 65532:65532 --network host \
    -e WARDEN_LISTEN="127.0.0.1:$listen" -e WARDEN_ADMIN_LISTEN="127.0.0.1:$admin" \
    -e WARDEN_UPSTREAM="$upstream" -e WARDEN_PASSWORD -e WARDEN_DRAIN_DELAY=1s \
    "$@" "$image" >/dev/null || fail "podman run $image"
}

# check_auth PORT: 401 without (and with wrong) credentials, 200 with them.
check_auth() {
  local base=http://127.0.0.1:$1 code c=(curl -sS --noproxy '*' --max-time 20)
  code=$("${c[@]}" -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' -d '{"prompt":"hi"}' "$base/v1/completions") || fail "curl $base"
  [[ $code == 401 ]] || fail "no credentials: status $code, want 401"
  grep -qi '^www-authenticate: Basic realm="warden"' "$tmp/h" || fail "401 without WWW-Authenticate: $(cat "$tmp/h")"
  grep -qi '^x-warden-error: unauthorized' "$tmp/h" || fail "401 without X-Warden-Error: unauthorized"
  code=$("${c[@]}" -K "$tmp/wrong.curlrc" -o /dev/null -w '%{http_code}' -d '{"prompt":"hi"}' "$base/v1/completions")
  [[ $code == 401 ]] || fail "wrong password: status $code, want 401"
  code=$("${c[@]}" -K "$tmp/auth.curlrc" -o "$tmp/b" -w '%{http_code}' \
    -H 'Content-Type: application/json' -d '{"prompt":"hello"}' "$base/v1/completions")
  [[ $code == 200 ]] || fail "with credentials: status $code, want 200: $(cat "$tmp/b")"
  grep -q 'warden checked your credentials' "$tmp/b" || fail "unexpected body from the model: $(cat "$tmp/b")"
  code=$("${c[@]}" -N -K "$tmp/auth.curlrc" -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' \
    -H 'Content-Type: application/json' -d '{"prompt":"hello","stream":true}' "$base/v1/completions")
  [[ $code == 200 ]] || fail "streamed, with credentials: status $code, want 200"
  grep -qi '^content-type: text/event-stream' "$tmp/h" || fail "stream without Content-Type text/event-stream"
  [[ $(grep -c '^data: ' "$tmp/b") -gt 5 && $(tail -n 2 "$tmp/b") == "data: [DONE]"* ]] ||
    fail "stream incomplete: $(cat "$tmp/b")"
  say "401 with WWW-Authenticate without credentials and with a wrong password; 200 with them, plain and streamed ($(grep -c '^data: ' "$tmp/b") events)"
}

# check_proc PID WHAT: runs as 65532 with no capabilities, no new privileges.
check_proc() {
  local pid=$1 what=$2 status
  status=$(<"/proc/$pid/status") || fail "no /proc/$pid for $what"
  grep -Eq '^Uid:\s+65532\s+65532\s+65532\s+65532$' <<<"$status" || fail "$what: $(grep '^Uid:' <<<"$status"), want 65532"
  grep -Eq '^Gid:\s+65532\s+65532\s+65532\s+65532$' <<<"$status" || fail "$what: $(grep '^Gid:' <<<"$status"), want 65532"
  for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
    grep -Eq "^$cap:\s+0+$" <<<"$status" || fail "$what: $(grep "^$cap:" <<<"$status"), want none"
  done
  grep -Eq '^NoNewPrivs:\s+1$' <<<"$status" || fail "$what: no-new-privileges is not set"
}

# check_readonly PID: the container's root is mounted read-only and refuses a write.
check_readonly() {
  local pid=$1 opts
  opts=$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo" | tail -n 1)
  [[ $opts == ro || $opts == ro,* ]] || fail "root filesystem mounted '$opts', want ro"
  if touch "/proc/$pid/root/.image-test-write-probe" 2>"$tmp/err"; then
    fail "wrote to the container's root filesystem"
  fi
  grep -q 'Read-only file system' "$tmp/err" || fail "write to the root failed, but not as read-only: $(cat "$tmp/err")"
}

# stop_and_check NAME [child]: SIGTERM (podman stop), then exit status 0 after
# the drain. With "child" (wrapper mode) warden's status is the model server's,
# as its "model server stopped" line gives it: 0 for a clean exit, 128+15 for
# one that SIGTERM ended (the demo has no SIGTERM handler); never SIGKILL.
stop_and_check() {
  local name=$1 wrapped=${2:-} t code want=0 status="" drained stopped
  t=${EPOCHREALTIME/./}
  timeout 90 podman stop -t 75 "$name" >/dev/null || fail "podman stop $name"
  code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
  podman logs "$name" >"$tmp/log" 2>&1
  grep -q '"message":"signal received: draining"' "$tmp/log" || fail "$name: no drain after SIGTERM"
  if [[ -n $wrapped ]]; then
    status=$(grep '"message":"model server stopped"' "$tmp/log" | sed -n 's/.*"status":"\([^"]*\)".*/\1/p')
    case $status in
    "exit status "*) want=${status#exit status } ;;
    "killed by signal terminated") want=143 ;;
    *) fail "$name: the model server did not stop on SIGTERM (status '${status:-none}')" ;;
    esac
    drained=$(grep -n -m1 '"message":"signal received: draining"' "$tmp/log" | cut -d: -f1)
    (($(grep -n -m1 '"message":"model server stopped"' "$tmp/log" | cut -d: -f1) > drained)) ||
      fail "$name: the model server stopped before warden drained"
  fi
  [[ $code == "$want" ]] || fail "$name exited $code after SIGTERM, want $want"
  stopped=$(grep '"message":"stopped"' "$tmp/log") || fail "$name: no \"stopped\" line after SIGTERM"
  [[ -z $wrapped || $stopped == *"\"exit_status\":$want,"* ]] || fail "$name: stopped line disagrees: $stopped"
  say "SIGTERM: drained and exited $code in $(((${EPOCHREALTIME/./} - t) / 1000)) ms${status:+ (the model server: $status)}"
}

free_port listen_port
free_port admin_port
name=warden-image-test-$$
say "running $IMAGE: read-only, --cap-drop=ALL, no-new-privileges, user 65532, host network on 127.0.0.1"
run_hardened "$name" "$IMAGE" "$listen_port" "$admin_port" "http://127.0.0.1:$demo_port"
wait_http "http://127.0.0.1:$admin_port/readyz" 200 30 "$name"
check_auth "$listen_port"

curl -sS --noproxy '*' --max-time 10 -o "$tmp/metrics" "http://127.0.0.1:$admin_port/metrics" || fail "GET /metrics"
grep -q "^warden_build_info{version=\"$VERSION\"} 1" "$tmp/metrics" || fail "/metrics has no warden_build_info for $VERSION"
grep -q '^warden_requests_total{code="200"} 2' "$tmp/metrics" || fail "/metrics does not count the two 200s"
say "/metrics answers: warden_build_info{version=\"$VERSION\"}, requests counted"

pid=$(podman inspect --format '{{.State.Pid}}' "$name")
check_proc "$pid" "warden"
check_readonly "$pid"
say "process: $(podman top "$name" user group capeff args | tail -n +2 | tr -s ' ')"
say "uid/gid 65532, no capabilities (effective, permitted, bounding), no-new-privileges, read-only root"

podman logs "$name" >"$tmp/log" 2>&1
start_line=$(grep '"message":"warden started"' "$tmp/log") || fail "no start line in the log"
[[ $start_line == *"\"version\":\"$VERSION\""* ]] || fail "start line does not show version $VERSION: $start_line"
[[ $start_line != *"$password"* ]] || fail "the start line shows the password"
say "start line: version $VERSION, mode protected"
out=$(timeout 30 podman run --rm --pull=never --label "$LABEL" --read-only --cap-drop=ALL "$IMAGE" --version 2>&1) ||
  fail "warden --version: $out"
[[ $out == "warden $VERSION" ]] || fail "warden --version says '$out', want 'warden $VERSION'"
say "warden --version: $out"

stop_and_check "$name"
podman rm "$name" >/dev/null
phase_done "run hardened"

# --- wrapper mode: the single-image recipe -------------------------------------
# `warden -- CMD ARGS...` starts CMD as its child and protects it. Tested only
# once the source has it.
wrapper_result="skipped: no wrapper mode"
has_wrapper_mode() {
  local f
  for f in ./*.go; do
    [[ $f != *_test.go ]] && grep -q -- '"--"' "$f" && return 0
  done
  return 1
}
if has_wrapper_mode; then
  say "wrapper mode: building a model image and the README's recipe on top of it"
  mkdir -p "$tmp/model" "$tmp/recipe"
  cp "$tmp/demo" "$tmp/model/demo"
  # A stand-in for a model server's own image: the demo binary on distroless.
  cat >"$tmp/model/Dockerfile" <<EOF
FROM $DISTROLESS
COPY demo /demo
ENTRYPOINT ["/demo"]
EOF
  timeout 300 buildah bud --isolation chroot --pull=never --layers --quiet \
    -t localhost/warden-test-model:ci "$tmp/model" >/dev/null || fail "buildah bud of the model image"
  free_port model_port
  # The recipe, as a user writes it.
  cat >"$tmp/recipe/Dockerfile" <<EOF
FROM localhost/warden-test-model:ci
COPY --from=$IMAGE /warden /usr/local/bin/warden
ENTRYPOINT ["/usr/local/bin/warden", "--", "/demo", "-listen", "127.0.0.1:$model_port"]
EOF
  sed 's/^/    /' "$tmp/recipe/Dockerfile"
  timeout 300 buildah bud --isolation chroot --pull=never --layers --quiet \
    -t localhost/warden-test-wrapped:ci "$tmp/recipe" >/dev/null || fail "buildah bud of the recipe"

  free_port listen_port
  free_port admin_port
  name=warden-image-test-wrapped-$$
  run_hardened "$name" localhost/warden-test-wrapped:ci "$listen_port" "$admin_port" \
    "http://127.0.0.1:$model_port" -e MODEL_SETTING=kept
  wait_http "http://127.0.0.1:$admin_port/readyz" 200 30 "$name"
  check_auth "$listen_port"

  pid=$(podman inspect --format '{{.State.Pid}}' "$name")
  check_proc "$pid" "warden (wrapper)"
  check_readonly "$pid"
  child=""
  read -r -a children <<<"$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr "\n" " ")"
  for c in "${children[@]}"; do
    [[ $(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null) == "/demo -listen 127.0.0.1:$model_port "* ]] && child=$c
  done
  [[ -n $child ]] || fail "no /demo child under warden (pid $pid): $(podman top "$name" pid ppid args)"
  check_proc "$child" "the wrapped model server"
  child_env=$(tr '\0' '\n' <"/proc/$child/environ")
  ! grep -q '^WARDEN_' <<<"$child_env" || fail "the child inherited WARDEN_ variables: $(grep -o '^WARDEN_[A-Z_]*' <<<"$child_env" | tr '\n' ' ')"
  grep -q '^MODEL_SETTING=kept$' <<<"$child_env" || fail "the child did not inherit MODEL_SETTING"
  say "wrapper: /demo runs as warden's child, uid 65532, no capabilities, without WARDEN_ variables, other variables kept"
  stop_and_check "$name" child
  podman rm "$name" >/dev/null

  # warden exits with the child's status: the demo exits 2 on an unknown flag.
  name=warden-image-test-wrapped-exit-$$
  run_hardened "$name" localhost/warden-test-wrapped:ci "$listen_port" "$admin_port" \
    "http://127.0.0.1:$model_port" --entrypoint '["/usr/local/bin/warden","--","/demo","-no-such-flag"]'
  code=$(timeout 30 podman wait "$name") || fail "warden did not exit within 30 s when its child did"
  [[ $code == 2 ]] || fail "warden exited $code when its child exited 2"
  podman rm "$name" >/dev/null
  say "wrapper: warden exits with its child's status (2)"
  wrapper_result="passed"
  phase_done "wrapper mode"
else
  say "skipped: no wrapper mode"
fi

podman image prune --force --filter until=168h >/dev/null 2>&1 || true # builds of old sources
say "timings:"
printf '    %s\n' "${timings[@]}"
say "store: $STORE, $(du -sh "$STORE" | cut -f1) (delete it for a cold run)"
say "passed: image $IMAGE ($(mb "$uncompressed"), $(mb "$compressed") compressed), version $VERSION; wrapper recipe: $wrapper_result"
