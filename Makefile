# oomhero — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED ?= 0
FUZZTIME ?= 5s
FUZZBUDGET ?= 120

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/oomhero (static, -tags nokube: the lean sidecar) and bin/oomhero-node (with the Kubernetes client, for the node agent)
	$(GO) build -trimpath -tags nokube -ldflags '$(LDFLAGS)' -o bin/oomhero ./cmd/oomhero
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/oomhero-node ./cmd/oomhero

.PHONY: deps
deps: ## install the Debian packages the tests need (root)
	testenv/install-deps

.PHONY: test
test: deps lint test-unit test-monitoring fuzz check-generate test-privileged test-e2e test-adversarial test-runtimes test-vm test-k8s ## install what is missing, run everything
	@echo "make test: all suites passed"

.PHONY: test-unit
test-unit: ## unit and fixture tests, with the race detector (needs cgo: gcc)
	CGO_ENABLED=1 $(GO) test -race -count=1 ./internal/... ./fallback/... ./cmd/... ./examples/... ./testenv/app/... ./testenv/benchstat/... ./testenv/bench/
	cd testenv/k8s && HELM=$(HELM) CGO_ENABLED=1 $(GO) test -race -count=1 ./manifests/...

.PHONY: test-monitoring
test-monitoring: ## promtool check rules and promtool test rules on deploy/monitoring (promtool: Debian package prometheus; missing fails under CI=true)
	@if ! command -v promtool >/dev/null; then \
		if [ "$$CI" = true ]; then echo "test-monitoring: promtool not found (testenv/install-deps installs the Debian package prometheus)" >&2; exit 1; fi; \
		echo "test-monitoring: promtool not found, skipped (make deps installs it)"; exit 0; \
	fi; \
	promtool check rules deploy/monitoring/oomhero-rules.yaml && cd deploy/monitoring && promtool test rules oomhero-rules_test.yaml

.PHONY: fuzz
fuzz: ## every native Go fuzz target (FuzzXxx) of the modules, FUZZTIME each (5s; less past FUZZBUDGET=120 s in all); failing inputs land in testdata/fuzz
	FUZZTIME=$(FUZZTIME) FUZZBUDGET=$(FUZZBUDGET) testenv/fuzz.sh

.PHONY: test-privileged
test-privileged: ## tests on real cgroups and BPF on this host (root)
	testenv/suite.sh /tmp/oomhero-loader-test.log $(GO) test -count=1 -v ./loader/...

.PHONY: test-e2e
test-e2e: ## real-pod suite (podman kube play), with the cgroupfs source, then the BPF source
	OOMHERO_E2E_SOURCE=cgroupfs testenv/suite.sh /tmp/oomhero-e2e-cgroupfs.log $(GO) test -count=1 -timeout 20m -v ./testenv/pods/...
	OOMHERO_E2E_SOURCE=bpf OOMHERO_E2E_NO_BUILD=1 testenv/suite.sh /tmp/oomhero-e2e-bpf.log $(GO) test -count=1 -timeout 20m -v ./testenv/pods/...

.PHONY: test-adversarial
test-adversarial: ## hostile containers next to a leaking victim and the sidecar (podman pods, 13 cases at a time)
	$(GO) test -count=1 ./testenv/hostile/...
	SUITE_SHOW='outcome: ' testenv/suite.sh /tmp/oomhero-adversarial.log $(GO) test -count=1 -parallel 13 -timeout 15m -v ./testenv/adversarial/...

.PHONY: test-runtimes
test-runtimes: ## real runtimes from Debian packages (JVM, node, PostgreSQL, nginx, httpd, php-fpm, redis, python) in pods next to oomhero
	testenv/suite.sh /tmp/oomhero-runtimes.log $(GO) test -count=1 -timeout 15m -parallel 4 -v ./testenv/runtimes/...

.PHONY: test-vm
test-vm: ## cgroup v2 suite in a qemu VM (Debian 6.1 kernel)
	testenv/suite.sh /tmp/oomhero-vm.log $(GO) test -count=1 -timeout 30m -v ./testenv/vm/...

.PHONY: test-k8s
test-k8s: ## real Kubernetes suite: builds (or reuses) the cluster, runs deploy/ on it, tears it down
	cd testenv/k8s && HELM=$(HELM) $(CURDIR)/testenv/suite.sh /tmp/oomhero-k8s.log $(GO) test -count=1 -timeout 40m -v ./...

.PHONY: k8s-up
k8s-up: ## start the local real Kubernetes (builds it the first time, about 11 min) and load the images
	testenv/k8s/scripts/build.sh
	testenv/k8s/scripts/up.sh
	testenv/k8s/scripts/images.sh

.PHONY: k8s-down
k8s-down: ## stop the local Kubernetes and remove what it left
	testenv/k8s/scripts/down.sh

.PHONY: demo-k8s
demo-k8s: deps ## the seed's story on the local real Kubernetes (installs what is missing first), with a chart of the app's memory
	testenv/k8s/scripts/demo.sh

.PHONY: image
image: build ## build localhost/oomhero:dev and the test app's image (podman, FROM scratch)
	CONTAINERS_CONF=$(CURDIR)/testenv/pods/containers.conf podman build -t localhost/oomhero:dev -f Dockerfile .
	mkdir -p bin/testapp-ctx && $(GO) build -trimpath -o bin/testapp-ctx/testapp ./testenv/app
	CONTAINERS_CONF=$(CURDIR)/testenv/pods/containers.conf podman build -t localhost/oomhero-testapp:dev -f testenv/app/Dockerfile bin/testapp-ctx

.PHONY: demo
demo: deps ## run the seed's bloat pod with oomhero as real pods (installs what is missing first) and draw the memory, thresholds, signals and OOM kill
	$(GO) run ./testenv/pods/cmd/demo

.PHONY: bench
bench: ## reaction latency (BPF vs cgroupfs, usage leading the working set), per-hit BPF cost, idle CPU and RSS for 200 and 2,000 processes, ratios to testenv/bench/baseline.json, then oomhero node next to 100 containers / 5,000 processes (testenv/nodebench) (about 57 min; run on a quiet machine)
	@echo "make bench: load average $$(cut -d' ' -f1-3 /proc/loadavg), $$(nproc) CPUs, kernel $$(uname -r)"
	$(GO) run ./loader/bench -lead-runs 50
	$(GO) run ./testenv/bench -source cgroupfs,bpf -runs 5 -idle 60s -shapes 200,2000 -shape-windows 5 -shape-window 20s
	$(GO) run ./testenv/nodebench -source bpf,cgroupfs -containers 100 -procs 5000 -runs 20 -rates 20,200 -windows 5 -window 60s

.PHONY: generate
generate: ## regenerate the BPF objects (needs clang)
	$(GO) generate ./loader/...

.PHONY: check-generate
check-generate: generate ## fail when the committed BPF objects differ from bpf/*.c
	git diff --exit-code -- loader/ bpf/
	@test -z "$$(git status --porcelain -- loader/ bpf/)" || { git status --porcelain -- loader/ bpf/; echo "generated files not committed"; exit 1; }

# staticcheck runs its default check set (every SA, S, ST and U1000 check it
# enables by default; no check is disabled here), pinned to one version and
# installed from the Go module proxy into bin/ on first use. LINT_MODULES
# leaves out testenv/k8s/cluster, the wrapper that builds Kubernetes and etcd
# (vetting it compiles all of them).
LINT_MODULES := . testenv/k8s testenv/cgroupsbench
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(CURDIR)/bin/staticcheck-$(STATICCHECK_VERSION)/staticcheck

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# helm renders deploy/helm/oomhero in the manifest tests (make test-unit;
# missing fails there under CI=true). Debian 12 does not package it: built
# from the Go module proxy at one pinned version into bin/ (testenv/install-deps
# runs `make helm`), with the version strings helm's own release build sets
# (its default Kubernetes version for `helm template` is that of its k8s.io
# modules, 1.37).
HELM_VERSION := v3.22.0
HELM := $(CURDIR)/bin/helm-$(HELM_VERSION)/helm
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37

$(HELM):
	GOBIN=$(dir $@) CGO_ENABLED=0 $(GO) install -trimpath -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: helm
helm: $(HELM) ## build bin/helm-<version>/helm (pinned, from the Go module proxy) for the manifest tests

.PHONY: lint
lint: $(STATICCHECK) ## gofmt, go vet and staticcheck, on every module of LINT_MODULES
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(LINT_MODULES); do echo "go vet, staticcheck: $$m"; (cd $$m && $(GO) vet ./... && $(STATICCHECK) ./...); done

.PHONY: clean
clean: ## remove build output
	rm -rf bin
