#!/usr/bin/env bash
# The demo: set up .venv (weft, its plugins, tqdm, matplotlib), then train a small
# character-level GPT on 2 CPU processes with DDP. Extra arguments go to the training
# script, e.g. `bash examples/demo.sh --strategy fsdp` or `bash examples/demo.sh --resume`.
# Outputs (checkpoint, loss.png) land in out/gpt/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${WEFT_DEMO_SKIP_SETUP:-0}" != 1 ]; then
    bash scripts/setup.sh
fi
exec .venv/bin/python examples/gpt/train.py "$@"
