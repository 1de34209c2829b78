#!/usr/bin/env bash
# Create (or refresh) the project virtualenv at $REPO/.venv with the local AWS emulator (moto server).
#
# Idempotent: a stamp file records the hash of requirements.txt and the Python version that the venv was
# built from, so a rerun with nothing changed returns at once. This is the ONLY step that downloads
# anything (from PyPI); the tests and `make demo` never install at run time.
#
# Environment:
#   PYTHON     interpreter used to create the venv (default: python3)
#   S3I_VENV   venv location (default: $REPO/.venv)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${S3I_VENV:-$repo/.venv}"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"
stamp="$venv/.s3i-requirements.stamp"

die() {
    echo "venv.sh: error: $*" >&2
    exit 1
}

command -v "$python" >/dev/null 2>&1 || die "'$python' not found; install Python 3 (or set PYTHON=/path/to/python3)"
[ -f "$requirements" ] || die "missing $requirements"

# The stamp names exactly what the venv was built from; any change rebuilds.
want="$(
    {
        sha256sum "$requirements" | cut -d' ' -f1
        "$python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
)"

up_to_date() {
    [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("moto") is None)' >/dev/null 2>&1
}

if up_to_date; then
    exit 0
fi

# Serialise concurrent runs (two `make` targets, or a developer and an editor) on the same venv.
mkdir -p "$(dirname "$venv")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$venv.lock"
    flock 9
    # Someone else may have finished the job while we waited.
    if up_to_date; then
        exit 0
    fi
fi

echo "venv.sh: installing the local AWS emulator into $venv (one-time, about a minute)..." >&2
rm -f "$stamp"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$python" -m venv "$venv" ||
        die "'$python -m venv' failed; on Debian/Ubuntu install the venv module: apt-get install python3-venv"
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements" ||
    die "pip install -r $requirements failed (is PyPI reachable?); rerun infra/local/venv.sh when fixed"

"$venv/bin/python" -c 'import moto.server' ||
    die "moto.server does not import after installing $requirements"

echo "$want" >"$stamp"
echo "venv.sh: ready: $venv ($("$venv/bin/python" -c 'import moto; print("moto", moto.__version__)'))" >&2
