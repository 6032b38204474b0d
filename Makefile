# keygate — run `make help` for the targets.
SHELL := /bin/bash
GO    ?= go
export GOTOOLCHAIN := local

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN     := bin/keygate

# make run: where the demo lives (ports are overridable).
RUN_DIR       ?= .run
PROXY_PORT    ?= 8080
ADMIN_PORT    ?= 9090
UPSTREAM_PORT ?= 3000

.PHONY: pgo help build run test test-short bench bench-peers fuzz lint clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n",$$1,$$2}'

build: ## build bin/keygate (static, no cgo)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/keygate

run: build ## start keygate on the embedded store in front of a demo upstream
	@RUN_DIR=$(RUN_DIR) PROXY_PORT=$(PROXY_PORT) ADMIN_PORT=$(ADMIN_PORT) \
	  UPSTREAM_PORT=$(UPSTREAM_PORT) BIN=$(BIN) ./scripts/run-demo.sh

test: ## the whole test suite with -race, PostgreSQL tests included
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 12m ./...

test-short: ## unit tests only, no race detector
	$(GO) test -count=1 ./...

bench: ## Go benchmarks of the hot path, then the end-to-end load comparison (needs wrk)
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./auth ./cache ./proxy
	./bench/run.sh

bench-peers: ## keygate against nginx and HAProxy doing a plain key check (needs wrk; fetches Debian's nginx and haproxy if absent)
	./bench/peers.sh

pgo: ## regenerate the profile-guided-optimization profiles (cmd/keygate and bench/bareproxy default.pgo; needs wrk)
	./bench/pgo.sh

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@for pkg in $$($(GO) list ./...); do \
	  for fn in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$fn"; \
	    $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $${FUZZTIME:-30s} $$pkg || exit 1; \
	  done; done

lint: ## go vet and gofmt
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

clean: ## remove build output and the demo's data
	rm -rf bin $(RUN_DIR)
