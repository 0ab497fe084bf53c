# Strata: build, run and test. See README.md.
GO        ?= go
BIN       := bin/strata
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.1
PROTOC_VERSION             := 3.21.12
TEST_TIMEOUT ?= 25m
BENCH     ?= .
BENCHTIME ?= 1x
# Per fuzz target: TEST_FUZZTIME in `make test`, FUZZTIME in `make fuzz`.
TEST_FUZZTIME ?= 5s
FUZZTIME  ?= 2m

.PHONY: all build dev test test-quick deps bench proto proto-check lint clean fuzz

all: build

build:
	$(GO) build -o $(BIN) ./cmd/strata

# The whole cluster on this machine: 3 metaservers, 6 dataservers, state in
# ~/.local/share/strata/dev (override with DEV_FLAGS="--dir DIR"). Ctrl-C stops it.
dev: build
	./$(BIN) dev $(DEV_FLAGS)

# Installs what the tests need (Debian packages, Go modules), then runs them,
# with the race detector (the servers and the client are heavily concurrent).
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	# Self-healing at the issue's full size (2 GiB), without the race
	# detector, which would make it take far too long on 2 cores.
	STRATA_HEAL_BIG=1 $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run 'TestHealKillThreeOneAtATime' ./metaserver
	# Every fuzz target for a few seconds each (hostile input; ~1.5 min).
	FUZZTIME=$(TEST_FUZZTIME) GO=$(GO) ./scripts/fuzz.sh

# The same without the race detector: about three times faster.
test-quick: deps
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

deps:
	./scripts/install-deps.sh

# Benchmarks (figures go in BENCHMARKS.md). BENCHTIME=1x runs each once;
# use e.g. BENCHTIME=3x for steadier numbers.
bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 60m ./...

# Regenerates proto/stratapb with pinned generators, then fails if the
# checked-in code differed.
proto:
	./scripts/genproto.sh $(PROTOC_VERSION) $(PROTOC_GEN_GO_VERSION) $(PROTOC_GEN_GO_GRPC_VERSION)

proto-check: proto
	git diff --exit-code -- proto/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin .bin

# End-to-end: a real Debian root file system from debootstrap (the machine's
# Debian mirror), imported, mounted with an overlay and chrooted into.
# Takes minutes; the .debs are cached in /var/cache/strata-e2e.
.PHONY: e2e
e2e: deps
	STRATA_E2E=1 $(GO) test -count=1 -v -run 'TestE2E' -timeout 30m ./cmd/strata

# Every fuzz target for FUZZTIME each (default 2m; e.g. FUZZTIME=30m).
# Crashers land in the package's testdata/fuzz/FuzzX/ (commit them once fixed).
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz.sh
