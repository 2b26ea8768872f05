#!/usr/bin/env bash
# The test command: set-up (idempotent) then the whole pytest suite, slow end-to-end tests included.
# Any pytest arguments pass through, e.g. `bash scripts/test.sh -m "not slow"` for the quick selection.
# Tests that need the research data (../shared/datasets) skip with the reason when it is absent; under CI
# (CI=true) they fail instead, and any skipped test fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/vistext ] || bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
