#!/usr/bin/env bash
# chart-test.sh: every check of the Helm chart in charts/warden.
#
#   1. helm lint --strict, with the default values and with each ci/*-values.yaml;
#   2. helm unittest on the chart, and on a consumer chart that injects warden's
#      container into its own pod spec through the chart's named templates;
#   3. each value combination in charts/warden/ci/ (and the consumer chart)
#      rendered and validated with `kubectl apply --dry-run=server
#      --warnings-as-errors` against a real kube-apiserver + etcd on 127.0.0.1,
#      in a namespace that enforces Pod Security "restricted"; two deliberately
#      bad renders must be refused, which proves the validation bites;
#   4. helm install, two upgrades and an uninstall against that API server: the
#      generated secret and the pods' checksum annotation survive an upgrade,
#      and the checksum changes when the secret does.
#
# Tools are built from source with Go the first time and cached under
# $WARDEN_TOOLS_DIR (default ~/.cache/warden-tools), one folder per tool and
# version, so later runs take seconds. On Debian as root, etcd comes from the
# etcd-server package. Everything this script starts is stopped when it exits;
# every wait is bounded; any failure exits non-zero.
#
#   scripts/chart-test.sh          all of the above
#   scripts/chart-test.sh tools    only build (or find) the tools
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHART=$ROOT/charts/warden

HELM_VERSION=v3.22.0
UNITTEST_VERSION=v1.1.2
K8S_VERSION=v1.37.2
TOOLS=${WARDEN_TOOLS_DIR:-$HOME/.cache/warden-tools}
BUILD_TIMEOUT=${WARDEN_TOOLS_BUILD_TIMEOUT:-1500} # seconds, per tool build

export PATH="$PATH:/usr/local/go/bin"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
case ${1:-} in
'' | tools) ;;
*)
	echo "usage: $0 [tools]" >&2
	exit 2
	;;
esac

log() { printf '\n==> %s\n' "$*" >&2; }
die() {
	printf 'chart-test: FAIL: %s\n' "$*" >&2
	exit 1
}

STARTED=$SECONDS
WORK=$(mktemp -d "${TMPDIR:-/tmp}/chart-test.XXXXXX")
PIDS=()   # started daemons, stopped in reverse order (kube-apiserver before etcd)
BUILDS=() # background tool builds, stopped with all their descendants

# descendants PID: the pids of every process below PID, read from /proc.
descendants() {
	local -A kids=()
	local p stat rest ppid c k queue=("$1") found=()
	for p in /proc/[0-9]*; do
		read -r stat <"$p/stat" 2>/dev/null || continue
		rest=${stat##*) } # "STATE PPID ...", after the command name
		ppid=${rest#* }
		kids[${ppid%% *}]+="${p#/proc/} "
	done
	while ((${#queue[@]})); do
		c=${queue[0]}
		queue=("${queue[@]:1}")
		for k in ${kids[$c]:-}; do
			found+=("$k")
			queue+=("$k")
		done
	done
	echo "${found[*]}"
}

# stop_pid PID NAME: SIGTERM, up to 15 s, then SIGKILL; reaps the child.
stop_pid() {
	local pid=$1 name=$2 i state
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
		if [[ -z $state || $state == Z ]]; then
			wait "$pid" 2>/dev/null || true
			return 0
		fi
		sleep 0.1
	done
	printf 'chart-test: %s (pid %s) did not stop in 15 s; killing it\n' "$name" "$pid" >&2
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for i in "${BUILDS[@]}"; do
		# shellcheck disable=SC2046 # one pid per word
		kill -TERM $(descendants "$i") "$i" 2>/dev/null || true
	done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]%%:*}" "${PIDS[i]#*:}"
	done
	if [[ $rc -ne 0 && -d $WORK/logs ]]; then
		for f in "$WORK"/logs/*.log; do
			[[ -s $f ]] || continue
			printf '\n--- last lines of %s ---\n' "${f##*/}" >&2
			tail -n 25 "$f" >&2
		done
	fi
	rm -rf "$WORK"
	printf '\nchart-test: %s after %ds\n' "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")" $((SECONDS - STARTED)) >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$WORK/logs"

source scripts/offline-k8s-tools.sh # builds the tools from source: no downloads here
install_tools
HELM=$HELM_DIR/helm
KUBECTL=$K8S_DIR/kubectl
APISERVER=$K8S_DIR/kube-apiserver
# helm keeps its own state in the work dir, so nothing of the user's is read or written.
export HELM_CONFIG_HOME=$WORK/helm/config HELM_CACHE_HOME=$WORK/helm/cache HELM_DATA_HOME=$WORK/helm/data
export HELM_PLUGINS=$UNITTEST_DIR/plugins
"$HELM" version --short
# (sed, not head: head would close the pipe early, and pipefail would fail the run)
"$KUBECTL" version --client | sed -n 1p
etcd --version | sed -n 1p
if [[ ${1:-} == tools ]]; then
	exit 0
fi

# ---------------------------------------------------------------- checks

PASSED=0
FAILED=0
FAILED_NAMES=()
# check NAME CMD...: runs one check, records its result, and goes on.
check() {
	local name=$1
	shift
	log "$name"
	if "$@"; then
		PASSED=$((PASSED + 1))
		printf 'ok    %s\n' "$name" >&2
	else
		FAILED=$((FAILED + 1))
		FAILED_NAMES+=("$name")
		printf 'FAIL  %s\n' "$name" >&2
	fi
}

# The value combinations: charts/warden/ci/NAME-values.yaml.
CASES=()
for f in "$CHART"/ci/*-values.yaml; do
	f=${f##*/}
	CASES+=("${f%-values.yaml}")
done
((${#CASES[@]} > 0)) || die "no values files in $CHART/ci"

lint() {
	"$HELM" lint --strict "$CHART" || return 1
	local c
	for c in "${CASES[@]}"; do
		echo "  with ci/$c-values.yaml" >&2
		"$HELM" lint --strict --quiet "$CHART" -f "$CHART/ci/$c-values.yaml" || return 1
	done
}

# The consumer chart, with the warden chart packaged into its charts/ folder,
# in the work dir (nothing is written under charts/).
CONSUMER=$WORK/consumer
prepare_consumer() {
	cp -R "$CHART/tests/consumer" "$CONSUMER" &&
		mkdir -p "$CONSUMER/charts" &&
		"$HELM" package "$CHART" -d "$CONSUMER/charts" >/dev/null &&
		"$HELM" lint --strict "$CONSUMER"
}

RENDERED=$WORK/rendered
render_all() {
	mkdir -p "$RENDERED"
	local c
	for c in "${CASES[@]}"; do
		"$HELM" template warden "$CHART" -n "ci-$c" -f "$CHART/ci/$c-values.yaml" >"$RENDERED/$c.yaml" || return 1
		printf '  %-18s %s objects\n' "$c" "$(grep -c '^kind:' "$RENDERED/$c.yaml")" >&2
	done
	"$HELM" template app "$CONSUMER" -n ci-consumer >"$RENDERED/consumer.yaml" || return 1
	printf '  %-18s %s objects\n' consumer "$(grep -c '^kind:' "$RENDERED/consumer.yaml")" >&2
}

# secret_b64 FILE KEY: the base64 value of KEY in the only Secret's data in FILE.
secret_b64() { sed -n "s/^  $2: \"\{0,1\}\([A-Za-z0-9+\/=]*\)\"\{0,1\}$/\1/p" "$1" | sed -n 1p; }

# Within one render, the checksum on the pods is that of the password in the Secret.
checksum_matches_secret() {
	local f=$RENDERED/default.yaml pw want got
	pw=$(secret_b64 "$f" password | base64 -d) || return 1
	[[ $pw =~ ^[A-Za-z0-9_-]{43}$ ]] || { echo "generated password is not 43 base64url characters (32 random bytes, as warden secret makes)" >&2; return 1; }
	want=$(printf 'warden-secret\npassword\n%s' "$pw" | sha256sum | cut -d' ' -f1)
	got=$(sed -n 's/^ *checksum\/warden-secret: //p' "$f")
	[[ $got == "$want" ]] || { echo "checksum/warden-secret = $got, want $want" >&2; return 1; }
}

# ---------------------------------------------------------------- API server

free_port() {
	local p i
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

export KUBECONFIG=$WORK/kubeconfig
k() { timeout 90 "$KUBECTL" --cache-dir "$WORK/kube-cache" --request-timeout=60s "$@"; }

start_cluster() {
	local etcd_port peer_port api_port token i
	etcd_port=$(free_port) && peer_port=$(free_port) && api_port=$(free_port) || return 1
	etcd --name chart-test --data-dir "$WORK/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "chart-test=http://127.0.0.1:$peer_port" >"$WORK/logs/etcd.log" 2>&1 &
	PIDS+=("$!:etcd")
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$etcd_port") 2>/dev/null && break
		sleep 0.2
	done
	((i < 100)) || { echo "etcd did not listen on 127.0.0.1:$etcd_port within 20 s" >&2; return 1; }

	token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	printf '%s,chart-test,chart-test,"system:masters"\n' "$token" >"$WORK/tokens.csv"
	openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null || return 1
	"$APISERVER" \
		--etcd-servers="http://127.0.0.1:$etcd_port" \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
		--endpoint-reconciler-type=none \
		--cert-dir="$WORK/pki" \
		--token-auth-file="$WORK/tokens.csv" \
		--authorization-mode=RBAC \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$WORK/sa.key" \
		--service-account-signing-key-file="$WORK/sa.key" \
		--service-cluster-ip-range=10.96.0.0/16 \
		>"$WORK/logs/kube-apiserver.log" 2>&1 &
	PIDS+=("$!:kube-apiserver")
	cat >"$KUBECONFIG" <<-KUBECONFIG
		apiVersion: v1
		kind: Config
		clusters:
		  - name: chart-test
		    cluster:
		      server: https://127.0.0.1:$api_port
		      insecure-skip-tls-verify: true
		users:
		  - name: chart-test
		    user:
		      token: $token
		contexts:
		  - name: chart-test
		    context:
		      cluster: chart-test
		      user: chart-test
		current-context: chart-test
	KUBECONFIG
	for ((i = 0; i < 120; i++)); do
		[[ $(k get --raw=/readyz 2>/dev/null) == ok ]] && break
		sleep 0.5
	done
	((i < 120)) || { echo "kube-apiserver not ready within 60 s" >&2; return 1; }
	k version | sed 's/^/  /' >&2
	# The ServiceMonitor CRD (a cut-down copy), so the ServiceMonitor is validated too.
	k apply -f "$CHART/tests/fixtures/servicemonitor-crd.yaml" >/dev/null &&
		k wait --for=condition=Established --timeout=60s crd/servicemonitors.monitoring.coreos.com >/dev/null
}

# restricted_namespace NAME: a namespace that enforces (and warns on) Pod
# Security "restricted", with the default ServiceAccount the controller manager
# would make (there is none here).
restricted_namespace() {
	k apply -f - >/dev/null <<-NS
		apiVersion: v1
		kind: Namespace
		metadata:
		  name: $1
		  labels:
		    pod-security.kubernetes.io/enforce: restricted
		    pod-security.kubernetes.io/enforce-version: latest
		    pod-security.kubernetes.io/warn: restricted
		    pod-security.kubernetes.io/warn-version: latest
		    pod-security.kubernetes.io/audit: restricted
		---
		apiVersion: v1
		kind: ServiceAccount
		metadata:
		  name: default
		  namespace: $1
	NS
}

# validate NAME FILE: server-side dry run; any warning (unknown field, Pod
# Security) is an error.
validate() {
	restricted_namespace "ci-$1" &&
		k apply --dry-run=server --warnings-as-errors -n "ci-$1" -f "$2" | sed 's/^/  /' >&2
}

# refused NAME PATTERN HELM-ARGS...: a render the API server must refuse, with
# an error matching PATTERN; proves the validation above bites.
refused() {
	local name=$1 pattern=$2 out
	shift 2
	"$HELM" template warden "$CHART" -n "ci-$name" "$@" >"$RENDERED/$name.yaml" || return 1
	restricted_namespace "ci-$name" || return 1
	if out=$(k apply --dry-run=server --warnings-as-errors -n "ci-$name" -f "$RENDERED/$name.yaml" 2>&1); then
		echo "the API server accepted a render it must refuse ($*)" >&2
		return 1
	fi
	grep -E "$pattern" <<<"$out" | sed -n '1,3s/^/  refused as expected: /p' >&2
	grep -qE "$pattern" <<<"$out" || { printf 'refused, but not for %s:\n%s\n' "$pattern" "$out" >&2; return 1; }
}

# A real install and two upgrades: the generated secret survives an upgrade and
# so does the checksum; a new password changes the checksum.
pod_checksum() { k -n ci-upgrade get deploy warden -o go-template='{{index .spec.template.metadata.annotations "checksum/warden-secret"}}'; }
stored_password() { k -n ci-upgrade get secret warden -o go-template='{{.data.password}}'; }
upgrade_keeps_secret() {
	local h=("$HELM" --kube-context chart-test) pw1 ck1 pw2 ck2 ck3 want
	restricted_namespace ci-upgrade || return 1
	timeout 120 "${h[@]}" install warden "$CHART" -n ci-upgrade --timeout 60s >/dev/null || return 1
	pw1=$(stored_password) && ck1=$(pod_checksum) || return 1
	want=$(printf 'warden-secret\npassword\n%s' "$(base64 -d <<<"$pw1")" | sha256sum | cut -d' ' -f1)
	[[ $ck1 == "$want" ]] || { echo "after install: checksum $ck1 is not that of the stored secret ($want)" >&2; return 1; }
	timeout 120 "${h[@]}" upgrade warden "$CHART" -n ci-upgrade --timeout 60s --set warden.logLevel=debug >/dev/null || return 1
	pw2=$(stored_password) && ck2=$(pod_checksum) || return 1
	[[ $pw2 == "$pw1" ]] || { echo "upgrade changed the generated secret" >&2; return 1; }
	[[ $ck2 == "$ck1" ]] || { echo "upgrade changed the checksum ($ck1 -> $ck2) though the secret did not change" >&2; return 1; }
	echo "  upgrade kept the secret and checksum/warden-secret ${ck1:0:12}…" >&2
	timeout 120 "${h[@]}" upgrade warden "$CHART" -n ci-upgrade --timeout 60s --reuse-values --set secret.password=rotated-by-chart-test >/dev/null || return 1
	ck3=$(pod_checksum) || return 1
	[[ $(stored_password | base64 -d) == rotated-by-chart-test ]] || { echo "secret.password did not reach the Secret" >&2; return 1; }
	[[ $ck3 != "$ck1" ]] || { echo "a new password left the checksum unchanged: pods would keep the old secret" >&2; return 1; }
	echo "  a new password changed it to ${ck3:0:12}…" >&2
	timeout 120 "${h[@]}" uninstall warden -n ci-upgrade --timeout 60s >/dev/null
}

check "helm lint --strict (defaults and ci/*-values.yaml)" lint
check "helm unittest charts/warden" "$HELM" unittest --strict "$CHART"
if check "consumer chart: package warden into it, helm lint --strict" prepare_consumer; then
	check "helm unittest on the consumer chart (injection templates)" "$HELM" unittest --strict "$CONSUMER"
fi
if check "helm template: ${CASES[*]} consumer" render_all; then
	check "checksum annotation = checksum of the generated Secret in the same render" checksum_matches_secret
	if check "start etcd and kube-apiserver $K8S_VERSION on 127.0.0.1" start_cluster; then
		for c in "${CASES[@]}"; do
			check "server-side dry run, Pod Security restricted: $c" validate "$c" "$RENDERED/$c.yaml"
		done
		check "server-side dry run, Pod Security restricted: consumer" validate consumer "$RENDERED/consumer.yaml"
		check "refused: a model that may escalate privileges" refused bad-psa 'allowPrivilegeEscalation != false' \
			--set model.securityContext.allowPrivilegeEscalation=true
		check "refused: an unknown field" refused bad-field 'unknown field "spec.template.spec.containers\[0\].securityContext.notAField"' \
			--set model.securityContext.notAField=true
		check "helm install + upgrade keep the generated secret and checksum; a new password rolls" upgrade_keeps_secret
	fi
fi

printf '\n' >&2
for n in "${FAILED_NAMES[@]}"; do
	printf 'FAILED: %s\n' "$n" >&2
done
echo "chart-test: $PASSED passed, $FAILED failed"
((FAILED == 0))
