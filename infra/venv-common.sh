# Sourced, never run, by infra/local/venv.sh and infra/deploy/venv.sh: what both do to create (or refresh)
# a virtualenv with the tools pinned in a requirements file.
#
# Idempotent: a stamp file records the hash of requirements.txt and the Python version that the venv was
# built from, so a rerun with nothing changed returns at once. Concurrent runs are serialised with flock.
#
# Sourcing sets `repo` (the checkout), `python` (the interpreter that creates the venv: $PYTHON, default
# python3) and `requirements` (requirements.txt next to the sourcing script). The script then sets `name`
# (itself in messages) and `venv`, defines `venv_has_tools` (true when the venv's tools are installed) and
# `venv_describe` (what the closing `ready` line names), and calls `sync_venv` (see there).

here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"

die() {
    echo "$name: error: $*" >&2
    exit 1
}

# sync_venv WHAT DURATION RERUN IMPORTS BROKEN: unless the venv is up to date, installs the requirements
# (WHAT and DURATION for the progress line; RERUN the script to run again after a failed install), then
# runs the Python statement IMPORTS, and fails with "BROKEN after installing ..." when it does not succeed.
sync_venv() {
    local what="$1" duration="$2" rerun="$3" imports="$4" broken="$5"
    local stamp="$venv/.s3i-requirements.stamp"

    command -v "$python" >/dev/null 2>&1 || die "'$python' not found; install Python 3 (or set PYTHON=/path/to/python3)"
    [ -f "$requirements" ] || die "missing $requirements"

    # The stamp names exactly what the venv was built from; any change rebuilds.
    local want
    want="$(
        {
            sha256sum "$requirements" | cut -d' ' -f1
            "$python" -c 'import sys; print(sys.version)'
        } | sha256sum | cut -d' ' -f1
    )"

    if venv_up_to_date "$stamp" "$want"; then
        return 0
    fi

    # Serialise concurrent runs (two `make` targets, or a developer and an editor) on the same venv.
    mkdir -p "$(dirname "$venv")"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$venv.lock"
        flock 9
        # Someone else may have finished the job while we waited.
        if venv_up_to_date "$stamp" "$want"; then
            return 0
        fi
    fi

    echo "$name: installing $what into $venv (one-time, $duration)..." >&2
    rm -f "$stamp"

    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$venv"
        "$python" -m venv "$venv" ||
            die "'$python -m venv' failed; on Debian/Ubuntu install the venv module: apt-get install python3-venv"
    fi

    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements" ||
        die "pip install -r $requirements failed (is PyPI reachable?); rerun $rerun when fixed"

    "$venv/bin/python" -c "$imports" ||
        die "$broken after installing $requirements"

    echo "$want" >"$stamp"
    echo "$name: ready: $venv ($(venv_describe))" >&2
}

# venv_up_to_date STAMP WANT: the venv exists, was built from WANT, and has its tools.
venv_up_to_date() {
    [ -x "$venv/bin/python" ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ] && venv_has_tools
}
