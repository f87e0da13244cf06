# warden: `make run` to try it, `make test` to run every test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# FUZZTIME: empty runs each target for a fixed number of inputs (about 15 s
# each here); a duration (30m) or a count (5000000x) applies to all.
FUZZTIME ?=
FUZZ_TIMEOUT ?= 2h
TIMING_SAMPLES ?= 10000000
SOAK ?= 10m
SOAK_TIMEOUT ?= 2h
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: build run deps test check unit e2e e2e-race soak soak-short fuzz timing bench peers lint chart image image-test clean

## build: a static binary in bin/warden
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/warden .

## run: warden in front of the demo model server (or $$WARDEN_UPSTREAM)
run:
	bash scripts/run.sh

## deps: install what the end-to-end tests use (Debian packages; needs root)
deps:
	bash scripts/deps.sh

## test: every test: unit (race detector), end to end (also with warden
## under the race detector), a 30 s soak, fuzzing, the container image and
## the Helm chart.
## image-test and chart need root on Debian (they install buildah, podman and
## etcd); the first chart run builds Kubernetes' API server (about 8 minutes).
test: deps unit e2e e2e-race soak-short fuzz image-test chart

## check: the quick loop while developing: unit, end to end, fuzzing
check: deps unit e2e fuzz

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -count=1 -run 'Alloc' ./auth/... ./proxy/... ./throttle/...

## E2E_PARALLEL: how many end-to-end tests run at once. Most own their
## processes and ports and mostly wait (drain delays, timeouts), so they
## overlap; the ones that measure time or load the machine run alone first.
E2E_PARALLEL ?= 8

e2e:
	$(GO) test -count=1 -timeout 20m -parallel $(E2E_PARALLEL) ./e2e/...

## e2e-race: the end-to-end tests with warden built with the race detector
e2e-race:
	WARDEN_E2E_RACE=1 $(GO) test -count=1 -timeout 20m -parallel $(E2E_PARALLEL) ./e2e/...

## soak: warden under a steady mixed load for $(SOAK) (make soak SOAK=1h;
## raise SOAK_TIMEOUT past 2h), failing on a wrong answer or on growth
soak:
	WARDEN_SOAK=$(SOAK) $(GO) test -count=1 -v -run '^TestSoak$$' -timeout $(SOAK_TIMEOUT) ./e2e/

soak-short:
	@$(MAKE) --no-print-directory soak SOAK=30s

## fuzz: each fuzz target briefly (make fuzz FUZZTIME=30m for a long run;
## the corpus is in */testdata/fuzz). The brief runs count inputs rather
## than time: a duration can end in a spurious "context deadline exceeded"
## with no failing input (golang/go#75804, fixed in Go 1.27).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(or $(FUZZTIME),1000000x) -timeout $(FUZZ_TIMEOUT) ./auth
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(or $(FUZZTIME),500000x) -timeout $(FUZZ_TIMEOUT) ./auth
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizePath$$' -fuzztime $(or $(FUZZTIME),300000x) -timeout $(FUZZ_TIMEOUT) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzBuildHead$$' -fuzztime $(or $(FUZZTIME),300000x) -timeout $(FUZZ_TIMEOUT) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzChunkedScanner$$' -fuzztime $(or $(FUZZTIME),1000000x) -timeout $(FUZZ_TIMEOUT) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzServe$$' -fuzztime $(or $(FUZZTIME),100000x) -timeout $(FUZZ_TIMEOUT) ./proxy

## timing: the dudect-style Welch t-test of the credential check
## (tools/timingtest), pinned to the last CPU; run it on a quiet machine
timing:
	$(GO) build -o bin/timingtest ./tools/timingtest
	taskset -c $$(( $$(nproc) - 1 )) bin/timingtest -samples $(TIMING_SAMPLES)

## bench: the Go benchmarks (must allocate nothing) and a load comparison of
## direct, warden and nginx (when installed), with a chart (scripts/bench.sh);
## BASELINE_BIN=path/to/older/warden adds it as "warden-base", side by side
bench:
	bash scripts/bench.sh

## peers: warden beside nginx, haproxy, Caddy and Go's ReverseProxy, every
## case of tools/peers (needs wrk, nginx, haproxy, caddy; see its README)
peers: build
	WARDEN_BIN=bin/warden bash tools/peers/peers.sh

## lint: golangci-lint (installed into bin/ on first use)
lint:
	@test -x bin/golangci-lint || GOBIN=$(CURDIR)/bin $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	bin/golangci-lint run ./...

## chart: the Helm chart's checks: lint, helm-unittest, server-side validation (scripts/chart-test.sh)
chart:
	bash scripts/chart-test.sh

IMAGE ?= warden:$(VERSION)
## image: the container image, built from Dockerfile with buildah, tagged
## $(IMAGE) and warden:latest (or: docker build -t warden .)
image:
	buildah bud --layers --build-arg VERSION=$(VERSION) -t $(IMAGE) -t warden:latest .

## image-test: build Dockerfile on local stand-in bases, test the image hardened under podman (root, Debian)
image-test:
	VERSION=$(VERSION) bash scripts/image-test.sh

clean:
	rm -rf bin
