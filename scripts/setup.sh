#!/usr/bin/env bash
# One-time set-up of a development machine: a virtualenv in .venv with vistext editable and every extra installed
# (train: the workshop with torch; serve, bot, ocr, postgres, distributed, dev), plus Debian's Chromium for the
# web-page tests. Safe to run again. A user who only runs vistext needs none of this: `pip install .` is the runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: this exact version is a local CPU build; anything else pulls a multi-GB CUDA build.
# The exact pin lives here, not in pyproject.toml (whose [train] extra asks only for torch>=2.5, so vistext installs
# beside any recent torch): the installed 2.13.0 already satisfies the range, so the next line keeps it.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[train,serve,bot,ocr,postgres,distributed,dev]'
# an editable install leaves vistext's own modules uncompiled, and where PYTHONDONTWRITEBYTECODE is set every
# command would compile them again (0.15 s of each start here): compile them once, as pip does for a wheel
.venv/bin/python -m compileall -q src >/dev/null
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; the web-page tests will fail" >&2
  else
    echo "setup: install Debian's chromium for the web-page tests" >&2
  fi
fi
