#!/usr/bin/env bash
# Create (or refresh) $REPO/.venv-deploy with the deployment tooling pinned in infra/deploy/requirements.txt:
# SAM CLI (`sam build/deploy/validate`), cfn-lint, aws-sam-translator (used by the template tests) and cargo-lambda
# with zig (arm64 Lambda builds). Everything comes from PyPI in seconds; never `cargo install cargo-lambda`.
#
# Idempotent: a stamp records the hash of requirements.txt and the Python version; a rerun with nothing changed
# returns at once. Concurrent runs are serialised with flock.
#
# Environment:
#   PYTHON           interpreter used to create the venv (default: python3)
#   S3I_DEPLOY_VENV  venv location (default: $REPO/.venv-deploy)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${S3I_DEPLOY_VENV:-$repo/.venv-deploy}"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"
stamp="$venv/.s3i-requirements.stamp"

die() {
    echo "deploy/venv.sh: error: $*" >&2
    exit 1
}

command -v "$python" >/dev/null 2>&1 || die "'$python' not found; install Python 3 (or set PYTHON=/path/to/python3)"
[ -f "$requirements" ] || die "missing $requirements"

want="$(
    {
        sha256sum "$requirements" | cut -d' ' -f1
        "$python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)"

up_to_date() {
    [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        [ -x "$venv/bin/sam" ] && [ -x "$venv/bin/cfn-lint" ] && [ -x "$venv/bin/cargo-lambda" ]
}

if up_to_date; then
    exit 0
fi

mkdir -p "$(dirname "$venv")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    flock 9
    if up_to_date; then
        exit 0
    fi
fi

echo "deploy/venv.sh: installing SAM CLI, cfn-lint and cargo-lambda into $venv (one-time, under a minute)..." >&2
rm -f "$stamp"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$python" -m venv "$venv" ||
        die "'$python -m venv' failed; on Debian/Ubuntu install the venv module: apt-get install python3-venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements" ||
    die "pip install -r $requirements failed (is PyPI reachable?); rerun infra/deploy/venv.sh when fixed"
"$venv/bin/python" -c 'import samtranslator, cfnlint, ziglang' ||
    die "the deployment tools do not import after installing $requirements"
echo "$want" >"$stamp"
echo "deploy/venv.sh: ready: $venv ($("$venv/bin/sam" --version))" >&2
