# offline-k8s-tools.sh: sourced by chart-test.sh. No release binary can be
# downloaded here, only Go modules, so helm, the helm-unittest plugin,
# kube-apiserver and kubectl are built from source through the Go module
# proxy (cached in $TOOLS), and etcd comes from Debian. This is the offline
# workaround, kept apart from the checks themselves; where release binaries
# can be had, put them on the paths below instead.
# shellcheck shell=bash

# ---------------------------------------------------------------- tools

GOARCH=$(go env GOARCH)
HELM_DIR=$TOOLS/helm-$HELM_VERSION
UNITTEST_DIR=$TOOLS/helm-unittest-$UNITTEST_VERSION
K8S_DIR=$TOOLS/kubernetes-$K8S_VERSION

# build_into DIR LOG CMD...: runs CMD (which writes DIR.tmp) with a time
# limit, then moves DIR.tmp to DIR, so an interrupted build is never cached.
build_into() {
	local dir=$1 logf=$2
	shift 2
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	if ! timeout "$BUILD_TIMEOUT" bash -c '"$@"' build "$@" >"$logf" 2>&1; then
		tail -n 40 "$logf" >&2
		rm -rf "$dir.tmp"
		die "building ${dir##*/} failed or took over ${BUILD_TIMEOUT}s (log above)"
	fi
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
}

build_helm() {
	local out=$1 minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	# Without these, helm reports a v1.20 cluster to `helm template` and `helm
	# lint`, and `helm version` says v3.22 without the patch level.
	GOBIN=$out go install -ldflags "-s -w \
		-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_unittest() {
	local out=$1 mod=$1/src src
	# `go install` refuses a module whose go.mod has a replace directive, so
	# build it in a scratch module that repeats the replace.
	mkdir -p "$mod"
	cat >"$mod/go.mod" <<-EOF
		module wardentools/unittest

		go 1.26

		require github.com/helm-unittest/helm-unittest $UNITTEST_VERSION

		replace github.com/vmware-labs/yaml-jsonpath v0.3.2 => github.com/helm-unittest/yaml-jsonpath v0.4.0
	EOF
	(cd "$mod" && go mod download -x github.com/helm-unittest/helm-unittest &&
		go build -mod=mod -ldflags "-s -w" -o "$out/untt-linux-$GOARCH" \
			github.com/helm-unittest/helm-unittest/cmd/helm-unittest)
	src=$(cd "$mod" && go list -mod=mod -m -f '{{.Dir}}' github.com/helm-unittest/helm-unittest)
	# The plugin's manifest, without its install hooks (they download a release).
	mkdir -p "$out/plugins/unittest"
	sed '/^platformHooks:/,$d' "$src/plugin.yaml" >"$out/plugins/unittest/plugin.yaml"
	mv "$out/untt-linux-$GOARCH" "$out/plugins/unittest/"
	rm -rf "$mod"
}

build_kubernetes() {
	local out=$1 mod=$1/src gomod minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	mkdir -p "$mod"
	gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -f $gomod ]] || die "no go.mod for k8s.io/kubernetes@$K8S_VERSION"
	# k8s.io/kubernetes points its staging modules at ./staging; point each at
	# its published v0.x.y instead.
	{
		printf 'module wardentools/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
		sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 v0.'"${K8S_VERSION#v1.}"'#p' "$gomod"
		printf ')\n'
	} >"$mod/go.mod"
	local ver=k8s.io/component-base/version
	(cd "$mod" && go build -mod=mod -o "$out/" -ldflags "-s -w \
		-X $ver.gitVersion=$K8S_VERSION -X $ver.gitMajor=1 -X $ver.gitMinor=$minor \
		-X $ver.gitTreeState=clean \
		-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
		-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
	rm -rf "$mod"
}

install_tools() {
	mkdir -p "$TOOLS"
	# build_into runs the builders in a child bash, under timeout.
	export -f die build_helm build_unittest build_kubernetes
	export HELM_VERSION UNITTEST_VERSION K8S_VERSION GOARCH
	local need_k8s=0 k8s_pid=
	[[ -x $K8S_DIR/kube-apiserver && -x $K8S_DIR/kubectl ]] || need_k8s=1
	df -h "$TOOLS" | tail -n 1 | awk '{print "tools: " $4 " free where they are cached"}' >&2
	# The Kubernetes build is the long one (minutes, cold): start it first, in
	# the background, and build the two small ones while it runs.
	if ((need_k8s)); then
		log "building kube-apiserver and kubectl $K8S_VERSION into $K8S_DIR (several minutes the first time)"
		build_into "$K8S_DIR" "$WORK/logs/build-kubernetes.log" build_kubernetes "$K8S_DIR.tmp" &
		k8s_pid=$!
		BUILDS+=("$k8s_pid")
	fi
	if [[ ! -x $HELM_DIR/helm ]]; then
		log "building helm $HELM_VERSION into $HELM_DIR"
		build_into "$HELM_DIR" "$WORK/logs/build-helm.log" build_helm "$HELM_DIR.tmp"
	fi
	if [[ ! -x $UNITTEST_DIR/plugins/unittest/untt-linux-$GOARCH ]]; then
		log "building helm-unittest $UNITTEST_VERSION into $UNITTEST_DIR"
		build_into "$UNITTEST_DIR" "$WORK/logs/build-unittest.log" build_unittest "$UNITTEST_DIR.tmp"
	fi
	if [[ -n $k8s_pid ]]; then
		wait "$k8s_pid" || die "building Kubernetes $K8S_VERSION failed"
		BUILDS=()
	fi
	if ! command -v etcd >/dev/null || ! command -v openssl >/dev/null; then
		if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
			log "installing etcd (Debian's etcd-server) and openssl"
			# policy-rc.d 101: the package must not start an etcd of its own.
			local had_policy=0
			[[ -e /usr/sbin/policy-rc.d ]] && had_policy=1
			if ((!had_policy)); then
				printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
				chmod +x /usr/sbin/policy-rc.d
			fi
			local ok=1
			{ timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 \
				apt-get install -y -qq --no-install-recommends etcd-server openssl; } >"$WORK/logs/apt.log" 2>&1 || ok=0
			((had_policy)) || rm -f /usr/sbin/policy-rc.d
			((ok)) || die "apt-get install etcd-server failed (see $WORK/logs/apt.log above)"
		else
			die "etcd not found: install Debian's etcd-server (or any etcd 3.4+) and put it on PATH"
		fi
	fi
	command -v openssl >/dev/null || die "openssl not found (needed for the API server's service-account key)"
}

