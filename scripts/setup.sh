#!/usr/bin/env bash
# Create .venv (if missing) and install weft, the first-party plugins, the example plugins and the test tools
# (Lightning Fabric among them, as the reference the differential suite in tests/compat/ compares against).
# torch is pinned by constraints.txt to the CPU build this machine provides.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
plugins=()
for d in plugins/*/ examples/plugins/*/; do [ -f "$d/pyproject.toml" ] && plugins+=(-e "$d"); done
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
    -e ".[test,compat]" "${plugins[@]}" -r requirements-dev.txt 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import weft, torch; print('weft', weft.__version__, '| torch', torch.__version__)"
