# sluice — see README.md. Every target works on a fresh machine with Go 1.26.
GO        ?= go
BIN       ?= bin/sluice
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
VERSITYGW ?= $(GOBIN)/versitygw
STATICCHECK_VERSION ?= v0.8.2
VERSITYGW_VERSION   ?= v1.8.0
# go-nvml's cgo headers use deprecated declarations; keep the build quiet.
export CGO_CFLAGS ?= -Wno-deprecated-declarations

.PHONY: all build demo test test-short test-faults fuzz bench bench-e2e bench-lineage lint tools clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sluice

## demo: run the main job end to end on embedded defaults (Kafka, S3 folder, OPA, CPU executor).
demo: build
	./$(BIN) demo --dir .demo

## test: every test, including the ones against a real S3 server (Versity S3 Gateway, built on first use),
## then a short run of each fuzz target (about 10 s each; see fuzz below for a longer hunt).
test: tools
	PATH="$(GOBIN):$$PATH" $(GO) test -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz

# Execution counts, not durations: a duration -fuzztime can fail with a
# spurious "context deadline exceeded" at its end on Go 1.26
# (golang/go#75804, fixed in 1.27). Each count is about 10 s on a 2-core
# machine; raise them for a longer hunt (FUZZ_DECODE=1000000x ...).
FUZZ_DECODE  ?= 60000x
FUZZ_PARSE   ?= 5000x
FUZZ_SEGMENT ?= 5000x
# Minimising a new find takes up to a minute by default, during which a
# short budget fuzzes nothing; a few seconds keep it fuzzing.
FUZZMINTIME ?= 3s
## fuzz: the parsers of untrusted bytes: records, specs, lineage segments.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZ_DECODE) -fuzzminimizetime $(FUZZMINTIME) ./ingest
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZ_PARSE) -fuzzminimizetime $(FUZZMINTIME) ./transform
	$(GO) test -run '^$$' -fuzz '^FuzzReadSegment$$' -fuzztime $(FUZZ_SEGMENT) -fuzzminimizetime $(FUZZMINTIME) ./lineage

## test-faults: the fault-injection suite with a larger budget (make test runs it small).
FAULT_RECORDS ?= 200000
FAULT_KILLS   ?= 6
test-faults: tools
	PATH="$(GOBIN):$$PATH" $(GO) test -count=1 -timeout 30m -run '^TestFaults$$' -v ./cmd/sluice/ \
		-args -faults.records=$(FAULT_RECORDS) -faults.kills=$(FAULT_KILLS)

## test-short: unit tests only.
test-short:
	$(GO) test -short ./...

## bench: the benchmarks recorded in docs/BENCHMARKS.md. Benchmarks whose one
## iteration is a whole consumer-group run use a fixed iteration count.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./ingest/ ./gpuexec/ ./storage/ ./policy/...
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2x ./lineage/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x ./ingest/kafka/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./cmd/sluice/

## bench-e2e: the whole pipeline against a minimal baseline, in separate processes (docs/BENCHMARKS.md).
E2E_RECORDS ?= 2000000
bench-e2e: build tools
	PATH="$(GOBIN):$$PATH" ./$(BIN) bench --records $(E2E_RECORDS) --s3

## bench-lineage: what signed lineage costs end to end: the full pipeline with lineage on and off, in turns.
## Twelve pairs: single pairs swing by ±15% on a shared machine, and the effect is about 5%.
LINEAGE_PAIRS ?= 12
bench-lineage: build
	./$(BIN) bench --records $(E2E_RECORDS) --against nolineage --repeat $(LINEAGE_PAIRS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

## tools: the S3 server the integration tests talk to (Apache-2.0), from the Go module proxy.
tools: $(VERSITYGW)

$(VERSITYGW):
	cd / && GOFLAGS=-mod=mod $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

clean:
	rm -rf bin .demo

## gpu-check: build the GPU check's test binaries (bin/gpu-check) and run them with scripts/gpu-check.sh.
## Without a GPU here the script says so (exit 2): carry bin/gpu-check and the script to a GPU machine and run
## scripts/gpu-check.sh bin/gpu-check REPORT_DIR there. SLUICE_GPU=fake dry-runs it on any machine.
GPU_CHECK_BIN    ?= bin/gpu-check
GPU_CHECK_REPORT ?= $(GPU_CHECK_BIN)/report
.PHONY: gpu-check
gpu-check:
	@mkdir -p $(GPU_CHECK_BIN)
	$(GO) test -c -ldflags='-s -w' -o $(GPU_CHECK_BIN)/cuda.test ./gpuexec/cuda
	$(GO) test -c -ldflags='-s -w' -o $(GPU_CHECK_BIN)/nvml.test ./gpuexec/nvml
	./scripts/gpu-check.sh $(GPU_CHECK_BIN) $(GPU_CHECK_REPORT)
