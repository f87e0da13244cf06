#!/usr/bin/env bash
# deps.sh: make sure the tools the end-to-end tests call are present, each at
# a pinned version:
#   - Debian packages: curl; Python with uvicorn, FastAPI, requests,
#     websockets and locust (the real model servers and clients of
#     e2e/interop_test.go, websocket_test.go and clients_test.go); Chromium
#     (the browser of clients_test.go). Installed with apt-get when run as
#     root on Debian; otherwise it says what is missing, and those tests skip.
#   - The Node clients of e2e/clients_test.go (the OpenAI and Anthropic SDKs,
#     LangChain, Hugging Face's client, playwright-core, autocannon) at the
#     exact versions of e2e/clients/package-lock.json: npm ci into
#     e2e/clients/node_modules, when it is missing or the lock file changed.
#     Needs Node 20 or later with npm (Debian 12's nodejs is 18: too old).
#   - vegeta, built into bin/ with go install.
# CI sets WARDEN_E2E_REQUIRE_PYTHON=1 and WARDEN_E2E_REQUIRE_CLIENTS=1, so a
# tool still missing there fails its tests instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."

VEGETA_VERSION=v12.13.0
GO=${GO:-go}

# --- Debian packages ---
missing=()
command -v curl >/dev/null || missing+=(curl)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
if [[ -x /usr/bin/python3 ]]; then
  for mod in fastapi:python3-fastapi uvicorn:python3-uvicorn requests:python3-requests websockets:python3-websockets locust:python3-locust; do
    /usr/bin/python3 -c "import ${mod%%:*}" 2>/dev/null || missing+=("${mod##*:}")
  done
else
  missing+=(python3 python3-fastapi python3-uvicorn python3-requests python3-websockets python3-locust)
fi
if ((${#missing[@]} > 0)); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or the tests that need them skip" >&2
  fi
fi

# --- Node clients ---
clients=e2e/clients
# npm ci leaves the lock file's hash here; a different hash means the lock
# file changed since.
stamp=$clients/node_modules/.warden-lock.sha256
want=$(sha256sum "$clients/package-lock.json" | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if ! command -v npm >/dev/null || ((node_major < 20)); then
    echo "deps: the Node clients of e2e/clients need Node 20 or later with npm (found: node ${node_major/#0/none}, npm $(command -v npm || echo none)); their tests skip" >&2
  else
    echo "deps: npm ci in $clients" >&2
    # engine-strict (e2e/clients/.npmrc): a package that needs a newer Node
    # fails here, not at run time.
    (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
fi

# --- vegeta ---
if ! "$GO" version -m bin/vegeta 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/tsenart/vegeta/v12[[:space:]]+$VEGETA_VERSION([[:space:]]|$)"; then
  echo "deps: go install github.com/tsenart/vegeta/v12@$VEGETA_VERSION into bin/" >&2
  GOBIN="$PWD/bin" "$GO" install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
fi
