# s3-importer — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
BENCH_MB ?= 1000
BENCH_RUNS ?= 1
BENCH_E2E_MB ?= 1000
BENCH_E2E_FORMATS ?= csv,jsonl,json
BENCH_E2E_MODES ?= ranged,single
BENCH_E2E_CONNECTION_MB_PER_S ?= 0
BENCH_LATENCY_FILES ?= 20
VENV := .venv
DEPLOY_VENV := .venv-deploy
# cargo-lambda and zig come from the deployment venv (PyPI), never from `cargo install`.
LAMBDA_PATH := $(CURDIR)/$(DEPLOY_VENV)/bin:$(PATH)
LAMBDA_BUILD := PATH="$(LAMBDA_PATH)" $(CARGO) lambda build --release --arm64

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: deploy-venv ## Build the Lambda functions for arm64 with cargo-lambda: target/lambda/{lister,worker}/bootstrap
	$(LAMBDA_BUILD) -p s3-importer-lister -p s3-importer-worker
	@for f in lister worker; do \
		printf '  %-7s %s bytes  target/lambda/%s/bootstrap\n' $$f "$$(stat -c %s target/lambda/$$f/bootstrap)" $$f; \
	done

# `sam build` calls these (template.yaml: BuildMethod makefile; samconfig.toml builds in source).
.PHONY: build-ListerFunction build-WorkerFunction
build-ListerFunction: deploy-venv
	$(LAMBDA_BUILD) -p s3-importer-lister
	cp target/lambda/lister/bootstrap "$(ARTIFACTS_DIR)/bootstrap"

# EventsFunction runs the lister's binary (it consumes the notification queue, see template.yaml).
.PHONY: build-EventsFunction
build-EventsFunction: deploy-venv
	$(LAMBDA_BUILD) -p s3-importer-lister
	cp target/lambda/lister/bootstrap "$(ARTIFACTS_DIR)/bootstrap"

build-WorkerFunction: deploy-venv
	$(LAMBDA_BUILD) -p s3-importer-worker
	cp target/lambda/worker/bootstrap "$(ARTIFACTS_DIR)/bootstrap"

.PHONY: validate
validate: deploy-venv ## Lint the SAM template: cfn-lint and `sam validate --lint`
	$(DEPLOY_VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(DEPLOY_VENV)/bin/sam validate --lint --template template.yaml

.PHONY: deploy-venv
deploy-venv: ## Install SAM CLI, cfn-lint, the SAM translator and cargo-lambda (with zig) into .venv-deploy (once)
	bash infra/deploy/venv.sh

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
test: venv deploy-venv ## Every test: unit, property, fuzz smoke, and the end-to-end suites against the emulator
	$(CARGO) test --workspace

.PHONY: demo
demo: ## Run the main job end to end on sample data and print what was imported and rejected
	bash infra/local/demo.sh

.PHONY: demo-stripe
demo-stripe: venv ## The Stripe destination against localstripe (a local fake Stripe server): products upserted, customers mapped
	$(CARGO) run -q -p s3-importer-tests --bin demo-stripe

.PHONY: bench-stripe
bench-stripe: ## Rows/s into the Stripe destination per object at its rate limit (BENCH_STRIPE_ROWS=100, BENCH_STRIPE_RATE=25), request-level server on loopback
	$(CARGO) run -q -p s3-importer-tests --bin bench-stripe

.PHONY: bench-webhook
bench-webhook: ## Rows/s into the webhook destination at its rate limit (BENCH_WEBHOOK_ROWS=50000, BENCH_WEBHOOK_BATCH_ROWS=500, BENCH_WEBHOOK_RATES=10,100), loopback receiver
	$(CARGO) run -q -p s3-importer-tests --bin bench-webhook

.PHONY: bench
bench: ## Pipeline throughput and peak RSS per format (BENCH_MB=1000, BENCH_RUNS=1)
	BENCH_MB=$(BENCH_MB) BENCH_RUNS=$(BENCH_RUNS) $(CARGO) bench -p s3-importer-file --bench pipeline

.PHONY: bench-e2e
bench-e2e: venv ## A BENCH_E2E_MB (1000) MB file per format (BENCH_E2E_FORMATS) imported on the emulator by the release worker binary, ranged and single-stream reads (BENCH_E2E_MODES), optionally through a per-connection rate cap (BENCH_E2E_CONNECTION_MB_PER_S)
	$(CARGO) build --release -p s3-importer-worker --bin worker
	$(CARGO) build -p s3-importer-tests --bin bench-e2e
	BENCH_E2E_MB=$(BENCH_E2E_MB) BENCH_E2E_FORMATS=$(BENCH_E2E_FORMATS) BENCH_E2E_MODES=$(BENCH_E2E_MODES) BENCH_E2E_CONNECTION_MB_PER_S=$(BENCH_E2E_CONNECTION_MB_PER_S) BENCH_E2E_WORKER=$(CURDIR)/target/release/worker target/debug/bench-e2e

.PHONY: bench-latency
bench-latency: venv ## Seconds from PutObject to `imported` for BENCH_LATENCY_FILES (20) files of a connector in events discovery on the emulator
	$(CARGO) build -p s3-importer-tests --bin bench-latency
	BENCH_LATENCY_FILES=$(BENCH_LATENCY_FILES) $${CARGO_TARGET_DIR:-target}/debug/bench-latency

.PHONY: soak
soak: venv ## SOAK_SECONDS (300) of SOAK_FILES (2000) file versions on the emulator under faults, killed workers and lost or repeated events; then rows expected / imported / missing / duplicated per connector
	$(CARGO) build -p s3-importer-tests --bin soak
	$${CARGO_TARGET_DIR:-target}/debug/soak

.PHONY: bench-lister
bench-lister: venv ## One reconciliation pass over BENCH_LISTER_OBJECTS (100000,1000000) generated objects and BENCH_LISTER_EMULATOR_OBJECTS (100000) on the emulator: list calls, ledger reads, peak RSS, seconds
	$(CARGO) build --release -p s3-importer-tests --bin bench-lister
	$${CARGO_TARGET_DIR:-target}/release/bench-lister

.PHONY: bench-destinations
bench-destinations: venv ## Rows/s into PostgreSQL, Parquet and DynamoDB (emulator) against psql \copy, pyarrow and boto3 on the `make bench` CSV (BENCH_MB, BENCH_RUNS, BENCH_DESTINATIONS, BENCH_DYNAMODB_ROWS)
	$(CARGO) build --release -p s3-importer-tests --bin bench-destinations
	BENCH_MB=$(BENCH_MB) BENCH_RUNS=$(BENCH_RUNS) $${CARGO_TARGET_DIR:-target}/release/bench-destinations

.PHONY: clean
clean: ## Remove build output and local state (not the virtualenv)
	$(CARGO) clean
	rm -rf .local
