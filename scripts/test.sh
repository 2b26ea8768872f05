#!/usr/bin/env bash
# The test command: set-up (idempotent) then the whole default pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/vistext ] || bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
