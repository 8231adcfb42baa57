#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up .venv, then pytest (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two pytest workers (pytest-xdist): most tests wait on processes they start, so two run well on
# 2 cores. --dist loadfile keeps each file in one worker, so its module-scoped fixtures (a kit job,
# Lightning's cached observations) are built once.
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
