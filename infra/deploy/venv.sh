#!/usr/bin/env bash
# Create (or refresh) $REPO/.venv-deploy with the deployment tooling pinned in infra/deploy/requirements.txt:
# SAM CLI (`sam build/deploy/validate`), cfn-lint, aws-sam-translator (used by the template tests) and cargo-lambda
# with zig (arm64 Lambda builds). Everything comes from PyPI in seconds; never `cargo install cargo-lambda`.
#
# Idempotent (see infra/venv-common.sh): a rerun with nothing changed returns at once.
#
# Environment:
#   PYTHON           interpreter used to create the venv (default: python3)
#   S3I_DEPLOY_VENV  venv location (default: $REPO/.venv-deploy)
set -euo pipefail

# shellcheck source=infra/venv-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../venv-common.sh"
name="deploy/venv.sh"
venv="${S3I_DEPLOY_VENV:-$repo/.venv-deploy}"

venv_has_tools() {
    [ -x "$venv/bin/sam" ] && [ -x "$venv/bin/cfn-lint" ] && [ -x "$venv/bin/cargo-lambda" ]
}

venv_describe() {
    "$venv/bin/sam" --version
}

sync_venv "SAM CLI, cfn-lint and cargo-lambda" "under a minute" infra/deploy/venv.sh \
    'import samtranslator, cfnlint, ziglang' "the deployment tools do not import"
