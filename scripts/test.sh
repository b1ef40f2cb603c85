#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what it needs, make sure
# Redis answers and Chromium is there (browser tests), run pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r requirements-dev.txt
bash scripts/ensure_redis.sh
bash scripts/ensure_chromium.sh
exec python3 -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
