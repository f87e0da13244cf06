#!/usr/bin/env bash
# deps.sh: make sure the tools the end-to-end tests call are present: curl,
# and Debian's Python with uvicorn, FastAPI, requests and websockets (the real
# model servers and clients of e2e/interop_test.go and websocket_test.go). Installs them with apt-get when
# run as root on Debian; otherwise says what is missing, and those tests skip.
set -euo pipefail

missing=()
command -v curl >/dev/null || missing+=(curl)
if [[ -x /usr/bin/python3 ]]; then
  for mod in fastapi:python3-fastapi uvicorn:python3-uvicorn requests:python3-requests websockets:python3-websockets; do
    /usr/bin/python3 -c "import ${mod%%:*}" 2>/dev/null || missing+=("${mod##*:}")
  done
else
  missing+=(python3 python3-fastapi python3-uvicorn python3-requests python3-websockets)
fi
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or the tests that need them skip" >&2
fi
