# edge: `make demo` runs the main job on this machine; `make test` runs the
# whole suite (installing what is missing first). Quiet unless something fails.
GO ?= go

.PHONY: all deps build demo test vet bench clean
all: build

deps:
	@scripts/install-deps

build:
	@$(GO) build -buildvcs=auto -o bin/edge ./cmd/edge

demo: build
	@scripts/install-deps demo
	@EDGE_BIN=$(CURDIR)/bin/edge $(GO) run ./internal/demo

vet:
	@$(GO) vet ./...

test: deps vet
	@$(GO) test -race ./proxy/... ./h1/... ./tlsmgr/... ./challenge/...
	@EDGE_TEST_VIA_REVERSEPROXY=1 $(GO) test -count=1 ./proxy
	@$(GO) test -count=1 -timeout 12m ./...
	@scripts/fuzz

bench: deps build
	@bench/run

clean:
	@rm -f bin/edge
