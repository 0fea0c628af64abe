# bm-agent: the sync daemon, its tray and the tenant API server.
# `make help` lists the targets.

GO        ?= go
BIN       ?= bin
PKGS      ?= ./...
STATICCHECK_VERSION ?= v0.8.2
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
export CGO_ENABLED ?= 0

.PHONY: help build demo test test-short test-faults lint vet staticcheck fmt tools clean bench bench-short bench-server dist

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

build: ## build bm-agent, bm-tray and bm-server into ./bin
	$(GO) build -o $(BIN)/ ./cmd/bm-agent ./cmd/bm-server ./cmd/bm-tray

demo: build ## run bm-server (embedded defaults) and bm-agent on a demo folder; Ctrl-C stops
	$(GO) build -o $(BIN)/ ./cmd/bm-demo
	$(BIN)/bm-demo -bin $(BIN)

test: lint ## vet, staticcheck and every test (what CI runs)
	$(GO) test -count=1 -timeout 30m $(PKGS)

test-faults: ## the fault suite in full (10,000 operations, 20 kills, a 30 s outage) with its figures; make test runs its short form
	@mkdir -p $(BIN)
	BM_FAULTS=full $(GO) test -count=1 -v -timeout 90m -run 'TestFaults|TestServerOutage' ./e2e/ 2>&1 | tee $(BIN)/faults.log | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|FIGURE'
	@grep -q '^ok' $(BIN)/faults.log

.PHONY: test-security
test-security: ## issue 13's security suite against a real bm-server (make test runs it too), with its figures, then a short fuzz
	@mkdir -p $(BIN)
	$(GO) test -count=1 -v -timeout 20m -run 'Security' ./server/... 2>&1 | tee $(BIN)/security.log | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|FIGURE'
	@! grep -q -E '^(FAIL|--- FAIL)' $(BIN)/security.log
	$(MAKE) fuzz FUZZTIME=$(SECURITY_FUZZTIME)

FUZZTIME ?= 30s
SECURITY_FUZZTIME ?= 15s
.PHONY: fuzz
fuzz: ## explore the S3 and API request parsers for FUZZTIME each (go test -fuzz; make test runs their committed seed corpora)
	$(GO) test -run '^$$' -fuzz '^FuzzS3Request$$' -fuzztime $(FUZZTIME) ./server/s3embed/
	$(GO) test -run '^$$' -fuzz '^FuzzAPIRequest$$' -fuzztime $(FUZZTIME) ./server/api/

.PHONY: s3-conformance
s3-conformance: ## rclone's own fstests against the embedded S3 and a real MinIO, providers Minio and Other; fails if the embedded one passes fewer
	@mkdir -p $(BIN)
	@set -e; for provider in Minio Other; do \
	  for target in embedded minio; do \
	    BM_FSTESTS_PROVIDER=$$provider BM_FSTESTS_TARGET=$$target $(GO) test -count=1 -tags fstests -run '^TestFstests$$' -v ./server/s3embed/ > $(BIN)/fstests-$$target-$$provider.log 2>&1 || true; \
	    eval "pass_$$target=$$(grep -c -- '--- PASS' $(BIN)/fstests-$$target-$$provider.log || true)"; \
	    echo "FIGURE fstests provider $$provider against $$target: $$(grep -c -- '--- PASS' $(BIN)/fstests-$$target-$$provider.log || true) pass, $$(grep -c -- '--- FAIL' $(BIN)/fstests-$$target-$$provider.log || true) fail, $$(grep -c -- '--- SKIP' $(BIN)/fstests-$$target-$$provider.log || true) skipped ($(BIN)/fstests-$$target-$$provider.log)"; \
	  done; \
	  if [ "$$pass_embedded" -lt "$$pass_minio" ] || [ "$$pass_minio" -eq 0 ]; then echo "provider $$provider: the embedded S3 passes $$pass_embedded, MinIO $$pass_minio"; exit 1; fi; \
	done

test-short: ## the tests without the slow end-to-end ones
	$(GO) test -short $(PKGS)

lint: vet staticcheck fmt ## gofmt, go vet and staticcheck

vet: ## go vet
	$(GO) vet $(PKGS)

staticcheck: tools ## staticcheck
	$(GOBIN)/staticcheck $(PKGS)

fmt: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

tools: ## install the Go tools the checks use
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

clean: ## remove build output
	rm -rf $(BIN) dist

dist: ## the release into dist/: archives for linux, darwin and windows on amd64 and arm64, deb, rpm, a Homebrew formula, SHA-256 checksums (VERSION=1.2.3 stamps that version)
	$(GO) run ./cmd/bm-dist -out dist $(if $(VERSION),-version $(VERSION))

bench: ## issue 12's benchmark: bm-agent against the seed's rclone bisync at 1k, 10k and 50k notes; writes docs/BENCHMARKS.md and $(BIN)/bench.json
	$(GO) run ./cmd/bm-bench -bin $(BIN)

.PHONY: bench-load bench-load-short
bench-load: ## issue 14's load test: 3 bm-server replicas on one PostgreSQL and a 4-node MinIO, 2,000 devices of 500 tenants for 60 s, one replica killed halfway
	$(GO) build -o $(BIN)/ ./cmd/bm-server
	$(GO) run ./cmd/bm-loadbench -bin $(BIN) -json $(BIN)/bench-load.json

bench-load-short: ## the same with 200 devices of 50 tenants for 15 s (make test runs it as bench/load TestLoadShort)
	$(GO) build -o $(BIN)/ ./cmd/bm-server
	$(GO) run ./cmd/bm-loadbench -short -bin $(BIN)

bench-short: ## the same at 1k and 10k notes with fewer samples (under 5 minutes); writes its section of docs/BENCHMARKS.md and $(BIN)/bench-short.json
	$(GO) run ./cmd/bm-bench -short -bin $(BIN)

bench-server: ## GET /tenant/mount/info at concurrency 64 for 20 s on SQLite and PostgreSQL (BENCH_DURATION=20s)
	BM_BENCH_DURATION=$(or $(BENCH_DURATION),20s) $(GO) test -run '^$$' -bench BenchmarkMountInfo -benchtime 1x -timeout 10m ./server/

.PHONY: tray-screenshots
tray-screenshots: ## regenerate docs/tray-<state>.png and docs/tray-menu.png: bm-tray in xfce4-panel under Xvfb
	BM_TRAY_SHOTS=$(CURDIR)/docs $(GO) test -count=1 -v -run '^TestTrayInPanel$$' ./ui/tray/
