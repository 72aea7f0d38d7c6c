# etcd-repopulate: see README.md. Every target works on a fresh Debian machine
# with Go and no Docker engine; `make tools` builds the real test parts once
# into ~/.cache/etcd-repopulate and links them into bin/.

GO       ?= go
BIN      := bin
RACE_PKGS := ./workflows/... ./activities/... ./procedures/...

.PHONY: all build tools manifests lint test test-unit test-production chaos demo demo-stop clean bench-fanout bench-fanout-remote bench-e2e bad-input-doc histories

all: build

build:
	$(GO) build -o $(BIN)/repopulate ./starter
	$(GO) build -o $(BIN)/repopulate-worker ./worker

## tools: pinned Temporal CLI and server (+ temporal-sql-tool), kube-apiserver, etcd, kube-controller-manager, kwok, workflowcheck, staticcheck, helm; apt: OpenSSH, pdsh, chromium, PostgreSQL
tools:
	hack/install-tools.sh

## manifests: render deploy/chart (default values) into deploy/*.yaml, their
## one source; deploy's TestManifestsAreTheChart fails when they differ
manifests:
	hack/install-tools.sh helm
	hack/render-manifests.sh deploy

## lint: gofmt, go vet, Temporal's workflowcheck and staticcheck must all be clean
lint: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/workflowcheck ./...
	$(BIN)/staticcheck ./...

## test: the whole suite against the real parts (README's test command, run by CI).
## Explicit timeouts: the chaos package alone takes 7-9 minutes on 2 cores,
## close to go test's default 10-minute limit per package; the production
## shape (Temporal on PostgreSQL, two workers) takes about 2 minutes.
test: tools lint
	$(GO) test -count=1 -race -timeout 15m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v -e /workflows -e /activities -e /procedures -e /internal/production -e /internal/pgtemporal)
	$(MAKE) test-production

## test-production: the production shape alone: the Temporal server on
## PostgreSQL with two workers, one SIGKILLed mid-step, a rolling restart at
## a gate (internal/pgtemporal, internal/production; docs/testing-production.md)
test-production: tools
	$(GO) test -count=1 -timeout 3m ./internal/pgtemporal/
	$(GO) test -count=1 -v -timeout 10m ./internal/production/

## chaos: the full chaos suite: SIGKILL the worker at every step boundary of
## every service and in long steps, restart Temporal; make test runs the
## reduced suite (docs/chaos.md)
chaos: tools
	REPOPULATE_CHAOS=full $(GO) test -count=1 -v -timeout 90m ./internal/chaos/

## histories: record the full histories of representative runs (all nine done,
## waiting at each gate, mid hmnfd batches, a failed service, a canceled run)
## on the real Temporal dev server into workflows/testdata/histories/SET (SET:
## HISTORIES_SET, by default the current commit); make test replays every
## recording, old ones included (docs/upgrading.md)
HISTORIES_SET ?= $(shell git rev-parse --short HEAD)
histories: tools
	REPOPULATE_RECORD_HISTORIES=workflows/testdata/histories/$(HISTORIES_SET) $(GO) test -count=1 -v -timeout 20m -run '^TestRecordHistories$$' ./internal/e2e/

## test-unit: the tests that need no tool of `make tools` (pure code, the
## in-process CSM emulator, HPE's definitions in ../shared): seconds, no build.
## -short skips internal/kube's tests on a real API server.
UNIT_PKGS := ./internal/api/... ./internal/catalog/... ./internal/config/... ./internal/workerconfig/... ./internal/productcatalog/... ./internal/badinput/... ./internal/csm/... ./internal/csmemu/... ./internal/contract/... ./internal/kube/... ./internal/plan/... ./workflows/...
test-unit:
	$(GO) test -count=1 -short $(UNIT_PKGS)

## bad-input-doc: run the tests that feed bad input to the real parts and regenerate docs/bad-input.md from what they observed
BAD_INPUT_PKGS  := ./internal/cli ./internal/config ./internal/hostrange ./internal/csm ./internal/sshfan ./workflows ./activities/... ./procedures/... ./internal/e2e
BAD_INPUT_TESTS := TestBadInput|TestPlanBadInput|TestStartAutoStartsNothing|TestPlanCannotReadTheCluster|TestBadInputChangesNothing|TestWorkerRefusesBadConfig|TestApproveAndReject|TestSnapshotBadInputs|TestStartSnapshotBadInputs|TestBadConfigIsRefusedWithTheKeyAndTheFix|TestExpandErrors|TestUnauthorizedRefreshAndRetry|TestBadSecretNamesClientAndTokenURL|TestStatusKinds|TestMalformedJSON|TestUnreachable|TestFleet|TestUnknownHostAndAuthFailure|TestCPSGatesApprovedInOrder|TestUnknownGateAndBadDecisionsAreRefused|TestUnknownServiceIsRejectedBeforeAnythingRuns|TestPreflightRefusesBadTargets|TestUnreachableAPIServerIsRetryableAndSaysWhere|TestCRDNotInstalled|TestAPIServerDownMidStep|TestStartRefusesSnapshotWithoutBSSForARestoringRun|TestSnapshotWithoutBootParametersOnCSM15|TestEtcdBackupAgeForbidden|TestDataCheckNeedsTheCSMAPI
bad-input-doc: tools
	@log=$$(mktemp /tmp/bad-input-XXXXXX.jsonl) && \
	  REPOPULATE_BAD_INPUT_LOG=$$log $(GO) test -count=1 -p 1 -run '^($(BAD_INPUT_TESTS))$$' $(BAD_INPUT_PKGS) && \
	  $(GO) run ./hack/badinputdoc -in $$log -out docs/bad-input.md && rm -f $$log
	$(GO) test -count=1 ./internal/badinput

## bench-fanout: 1,000 loopback sshd nodes; pdsh -f 32, pdsh -f W, the fan-out code and a workflow run, at 1 s and 0 s restarts
BENCH_NODES ?= 1000
BENCH_WIDTH ?= 256
bench-fanout: tools
	$(GO) build -o $(BIN)/bench-fanout ./hack/bench-fanout
	$(BIN)/bench-fanout -nodes $(BENCH_NODES) -width $(BENCH_WIDTH) -delay 1s
	$(BIN)/bench-fanout -nodes $(BENCH_NODES) -width $(BENCH_WIDTH) -delay 0s

## bench-fanout-remote: the same tools on a fleet that behaves like remote nodes (one x/crypto/ssh server process,
## internal/sshfleet): 1 s restarts, then 1 s with BENCH_STRAGGLERS of the nodes taking BENCH_STRAGGLER_DELAY, then 0 s;
## BENCH_NODES=10000 for the 10,000-node runs (most of an hour: pdsh -f 32; docs/benchmarks.md "10,000 nodes")
BENCH_STRAGGLERS ?= 0.01
BENCH_STRAGGLER_DELAY ?= 10s
bench-fanout-remote: tools
	$(GO) build -o $(BIN)/bench-fanout ./hack/bench-fanout
	$(GO) build -o $(BIN)/sshfleet ./hack/sshfleet
	$(BIN)/bench-fanout -fleet remote -fleet-bin $(BIN)/sshfleet -nodes $(BENCH_NODES) -width $(BENCH_WIDTH) -delay 1s
	$(BIN)/bench-fanout -fleet remote -fleet-bin $(BIN)/sshfleet -nodes $(BENCH_NODES) -width $(BENCH_WIDTH) -delay 1s \
		-stragglers $(BENCH_STRAGGLERS) -straggler-delay $(BENCH_STRAGGLER_DELAY)
	$(BIN)/bench-fanout -fleet remote -fleet-bin $(BIN)/sshfleet -nodes $(BENCH_NODES) -width $(BENCH_WIDTH) -delay 0s

## bench-e2e: all nine services on the demo's system with fixed simulated latencies, each gate approved at once:
## wall against the critical path (catalog orderings), per-step orchestration overhead from the histories
bench-e2e: tools
	$(GO) build -o $(BIN)/repopulate ./starter
	$(GO) build -o $(BIN)/repopulate-worker ./worker
	$(GO) build -o $(BIN)/ ./hack/simcluster ./hack/csmemu ./hack/sshnodes ./hack/bench-e2e
	$(BIN)/bench-e2e -bin $(BIN)

## demo: local Temporal dev server + simulated CSM system + worker: snapshot, "rebuild", a full run with its gates
## (hack/demo.sh builds what it runs)
demo: tools
	hack/demo.sh start

demo-stop:
	hack/demo.sh stop

clean: demo-stop
	rm -rf $(BIN) .demo
