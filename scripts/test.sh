#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up .venv, then pytest (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
