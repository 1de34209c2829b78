#!/usr/bin/env bash
# Create (or refresh) the project virtualenv at $REPO/.venv with the local AWS emulator (moto server).
#
# Idempotent (see infra/venv-common.sh): a rerun with nothing changed returns at once. This is the ONLY
# step that downloads anything (from PyPI); the tests and `make demo` never install at run time.
#
# Environment:
#   PYTHON     interpreter used to create the venv (default: python3)
#   S3I_VENV   venv location (default: $REPO/.venv)
set -euo pipefail

# shellcheck source=infra/venv-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../venv-common.sh"
name="venv.sh"
venv="${S3I_VENV:-$repo/.venv}"

venv_has_tools() {
    "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("moto") is None or u.find_spec("localstripe") is None)' >/dev/null 2>&1
}

venv_describe() {
    "$venv/bin/python" -c 'import moto; print("moto", moto.__version__, end=", "); import importlib.metadata as m; print("localstripe", m.version("localstripe"))'
}

sync_venv "the local AWS emulator" "about a minute" infra/local/venv.sh \
    'import moto.server' "moto.server does not import"
