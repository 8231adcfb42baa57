#!/usr/bin/env bash
# The demo: set up .venv (weft, its plugins, tqdm, matplotlib), then train a small
# character-level GPT on 2 CPU processes with DDP. Extra arguments go to the training
# script, e.g. `bash examples/demo.sh --strategy fsdp` or `bash examples/demo.sh --resume`.
# Outputs land in out/gpt/: the checkpoint, the metrics logged through Fabric(loggers=...)
# (logs/csv/version_N/metrics.csv: loss, validation loss, throughput; logs/tensorboard/ too
# when the weft-loggers plugin is installed) and loss.png, drawn from the CSV logs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${WEFT_DEMO_SKIP_SETUP:-0}" != 1 ]; then
    bash scripts/setup.sh
fi
exec .venv/bin/python examples/gpt/train.py "$@"
