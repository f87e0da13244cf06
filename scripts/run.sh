#!/usr/bin/env bash
# run.sh: build warden and run it in the foreground, protecting the demo
# model server (or WARDEN_UPSTREAM, if you set it). `make run` calls this.
#
#   make run                                        # demo upstream, random password
#   WARDEN_PASSWORD=s3cret make run                 # your password
#   WARDEN_UPSTREAM=http://127.0.0.1:9000 make run  # your model server
#
# Ctrl-C stops warden (after its drain) and the demo upstream.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p bin
go build -o bin/warden .

demo_pid=""
cleanup() { [[ -n $demo_pid ]] && kill "$demo_pid" 2>/dev/null || true; }
trap cleanup EXIT

if [[ -z ${WARDEN_UPSTREAM:-} ]]; then
  go build -o bin/demo ./demo
  bin/demo -listen 127.0.0.1:8000 &
  demo_pid=$!
  export WARDEN_UPSTREAM=http://127.0.0.1:8000
fi

if [[ -z ${WARDEN_PASSWORD:-} && -z ${WARDEN_PASSWORD_FILE:-} && ${WARDEN_MODE:-} != public ]]; then
  WARDEN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
  export WARDEN_PASSWORD
fi
export WARDEN_LISTEN=${WARDEN_LISTEN:-127.0.0.1:8080}
export WARDEN_ADMIN_LISTEN=${WARDEN_ADMIN_LISTEN:-127.0.0.1:9901}
export WARDEN_LOG_FORMAT=${WARDEN_LOG_FORMAT:-console}
export WARDEN_DRAIN_DELAY=${WARDEN_DRAIN_DELAY:-0s}

port=${WARDEN_LISTEN##*:}
cat <<EOF

warden protects $WARDEN_UPSTREAM on $WARDEN_LISTEN (admin: $WARDEN_ADMIN_LISTEN). Try:

  curl -i http://127.0.0.1:$port/v1/completions                     # 401
  curl -N -u "${WARDEN_USERNAME:-paperspace}:${WARDEN_PASSWORD:-<your password>}" \\
       -d '{"prompt": "hello", "stream": true}' http://127.0.0.1:$port/v1/completions

EOF
bin/warden
