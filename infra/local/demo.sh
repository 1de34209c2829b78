#!/usr/bin/env bash
# `make demo`: the import pipeline on the sample files in examples/demo/files, with examples/demo/orders.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet -p s3-importer-cli
out=$(mktemp -d)
status=0
for f in examples/demo/files/*; do
  echo "== $f"
  if ! ./target/debug/s3-importer import-file --template examples/demo/orders.toml --out-dir "$out" "$f"; then
    status=1
  fi
done
echo
echo "Output in $out"
exit $status
