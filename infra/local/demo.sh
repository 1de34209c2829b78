#!/usr/bin/env bash
# `make demo`: the main job end to end on the local AWS emulator.
#
# Starts a private moto server, creates the deployment's resources (state table, records table, work queue
# with its DLQ, output bucket) and a source bucket, uploads the sample files (good CSV, JSON Lines and JSON,
# one CSV with bad rows, one unsupported file, one over the demo's 100 KB size limit), stores the sample
# template, creates a connector, runs one sync and drains the workers through the same handlers Lambda runs,
# then prints every file's outcome and how many records the destination holds.
# Exits non-zero if any step fails or the outcome is not the expected one.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

bash infra/local/venv.sh
cargo build --quiet -p s3-importer-cli
cli="$repo/target/debug/s3-importer"

# A private emulator, stopped on exit, so every demo starts from nothing.
export S3I_LOCAL_DIR
S3I_LOCAL_DIR="$(mktemp -d)"
work="$(mktemp -d)"
cleanup() {
    bash infra/local/moto.sh stop >/dev/null 2>&1 || true
    rm -rf "$S3I_LOCAL_DIR" "$work"
}
trap cleanup EXIT
eval "$(bash infra/local/moto.sh start)"
export S3I_LOG_FORMAT=text RUST_LOG="${RUST_LOG:-warn}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Resources on the emulator at $AWS_ENDPOINT_URL"
eval "$("$cli" local setup --prefix demo)"
env | grep '^S3I_\(STATE_TABLE\|RECORDS_TABLE\|QUEUE_URL\|OUTPUT_BUCKET\)=' | sort
# Small on purpose, so the demo shows a file skipped for its size.
export S3I_MAX_FILE_BYTES=100000

step "Sample files in s3://demo-source/incoming/"
"$cli" local create-bucket demo-source
# One export over the size limit: 2,000 well-formed rows, about 150 KB.
python3 - "$work/orders-2024-05-05-full-export.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("Order ID,Customer,Amount,Currency,Paid,Created At,Quantity,Notes,Ship Date,Attributes\n")
    for i in range(2000):
        f.write(f"E-{i:05d},Customer number {i},{i}.50,EUR,true,2024-05-05T10:00:00Z,1,bulk export row,,\n")
PY
"$cli" local upload examples/demo/files --bucket demo-source --prefix incoming/
"$cli" local upload "$work" --bucket demo-source --prefix incoming/

step "Template and connector"
"$cli" template add examples/demo/orders.toml
"$cli" connector create --name demo-orders --account-id 123456789012 --bucket demo-source \
    --region us-east-1 --folder incoming/ --template demo-orders

step "One sync, then the workers drain the queue"
"$cli" run --once --connector demo-orders

step "Files"
"$cli" connector files demo-orders
"$cli" connector files demo-orders --json > "$work/files.json"

step "Destination"
records="$("$cli" local count-records demo-orders)"
echo "records table $S3I_RECORDS_TABLE holds $records records for connector demo-orders"
report="$(python3 -c 'import json,sys; print(next(f["error_report"] for f in json.load(open(sys.argv[1])) if f.get("error_report")))' "$work/files.json")"
echo "error report of the file with bad rows: $report"

# The demo is also a smoke test: check the outcome is the expected one.
python3 - "$work/files.json" "$records" <<'PY'
import json, sys
files = {f["version"]["key"].split("/")[-1]: f for f in json.load(open(sys.argv[1]))}
expect = {
    "orders-2024-05-01.csv": ("imported", 5, 0),
    "orders-2024-05-02.jsonl": ("imported", 3, 0),
    "orders-2024-05-03.json": ("imported", 2, 0),
    "orders-2024-05-04-bad.csv": ("imported", 2, 5),
    "README.txt": ("skipped", 0, 0),
    "orders-2024-05-05-full-export.csv": ("skipped", 0, 0),
}
bad = []
for name, (status, imported, rejected) in expect.items():
    f = files.get(name)
    got = f and (f["status"], f.get("rows_imported", 0), f.get("rows_rejected", 0))
    if got != (status, imported, rejected):
        bad.append(f"{name}: expected {(status, imported, rejected)}, got {got}")
if int(sys.argv[2]) != 12:
    bad.append(f"records: expected 12, got {sys.argv[2]}")
if bad:
    print("\ndemo FAILED:\n  " + "\n  ".join(bad))
    sys.exit(1)
print("\ndemo OK: 4 files imported (12 rows, 5 rejected with a report), 2 skipped with their reason")
PY
