# s3-importer — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
BENCH_MB ?= 1000
BENCH_RUNS ?= 1
VENV := .venv

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build everything (debug)
	$(CARGO) build --workspace --all-targets

.PHONY: check
check: fmt-check clippy doc ## The cheap checks: formatting, clippy -D warnings, docs -D warnings

.PHONY: fmt-check
fmt-check:
	$(CARGO) fmt --all -- --check

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: clippy
clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: doc
doc:
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --workspace --no-deps --quiet

.PHONY: venv
venv: ## Install the local AWS emulator (moto server) into .venv (once; ~1 minute)
	bash infra/local/venv.sh

.PHONY: test
test: venv ## Every test: unit, property, fuzz smoke, and the end-to-end suites against the emulator
	$(CARGO) test --workspace

.PHONY: demo
demo: ## Run the main job end to end on sample data and print what was imported and rejected
	bash infra/local/demo.sh

.PHONY: bench
bench: ## Pipeline throughput and peak RSS per format (BENCH_MB=1000, BENCH_RUNS=1)
	BENCH_MB=$(BENCH_MB) BENCH_RUNS=$(BENCH_RUNS) $(CARGO) bench -p s3-importer-core --bench pipeline

.PHONY: clean
clean: ## Remove build output and local state (not the virtualenv)
	$(CARGO) clean
	rm -rf .local
