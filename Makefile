# direktiv-authz: `make help` lists the targets.
GO        ?= go
BIN       := bin/direktiv-authz
PKG       := ./cmd/direktiv-authz
# The opa CLI at the version the engine embeds, run from the module proxy.
OPA        = github.com/open-policy-agent/opa@$(shell $(GO) list -m -f "{{.Version}}" github.com/open-policy-agent/opa)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## run the sidecar in dev mode (in-memory store, embedded policies, admin token printed)
	$(GO) run $(PKG) --dev

.PHONY: build
build: ## build the binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) $(PKG)

.PHONY: redis-server
redis-server: ## make sure redis-server is installed (tests start their own on free ports)
	@command -v redis-server >/dev/null 2>&1 || .ci/install-redis

.PHONY: test
test: redis-server ## vet, the macOS and Windows builds, then every Go and Rego test with the race detector against real redis-server processes
	$(GO) vet ./...
	GOOS=darwin $(GO) build ./...
	GOOS=windows $(GO) build ./...
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: lint
lint: ## gofmt, go vet, opa fmt/check and regal lint on policies/
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: the files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(OPA) fmt --list --fail policies/
	$(GO) run $(OPA) check --strict policies/
# regal, pinned in .regal/go.mod (its settings in .regal/config.yaml): the
# module proxy will not list regal's versions, so neither `go run
# regal@latest` nor `go run regal@vX` installs it; `go tool` in a module
# that requires it does.
	cd .regal && $(GO) tool regal lint ../policies

.PHONY: fuzz
fuzz: ## run each fuzz test for FUZZTIME (default 20s)
	@for t in $$($(GO) test -list '^Fuzz' ./... | grep '^Fuzz'); do \
	  pkg=$$(grep -rl "func $$t(" --include='*_test.go' . | head -1 | xargs dirname); \
	  echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-20s} $$pkg || exit 1; \
	done

.PHONY: bench
bench: redis-server ## the standard comparison on loopback (sidecar vs stub, nginx, redis-benchmark): ratios in bench/RESULTS.md
	@bash bench/install-tools
	$(GO) run ./bench compare $(BENCHFLAGS)

.PHONY: bench-scale
bench-scale: redis-server ## the sidecar at a million live tokens: mint, forward, list, revoke a subtree under load (SCALEFLAGS="-tokens 50000 -subtree 20000" for a quick run)
	$(GO) run ./bench scale $(SCALEFLAGS)

.PHONY: bench-go
bench-go: ## Go benchmarks of the hot paths
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: clean
clean: ## remove build output
	rm -rf bin
