"""Shared test helpers: run real processes with a timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_python(args, *, timeout=120, env=None, cwd=None, check=True):
    """Run ``python ARGS`` in a fresh process; fail the test (not hang) after ``timeout`` seconds."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("WEFT_CLI_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_", "TORCHELASTIC"))}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env.update(env or {})
    try:
        proc = subprocess.run(
            [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after {timeout}s: {args}\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")
    if check and proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def python():
    return run_python


# Files whose tests start many multi-process jobs run first: with two pytest-xdist workers taking
# whole files (--dist loadfile), the quick files then fill the gaps at the end instead of one worker
# finishing a long file alone. A stable sort: every worker collects the same order, as xdist needs.
_SLOW_FIRST = (
    "reliability/test_process_lifecycle.py",
    "reliability/test_transport_and_collectives.py",
    "reliability/test_checkpoint_integrity.py",
    "reliability/test_exact_resume.py",
    "reliability/test_no_hangs.py",
    "docs/test_docs_samples.py",
    "compat/",
    "kit/",
    "launch/",
    "ddp/",
    "fsdp/",
    "examples/",
    "environments/",
    "core/test_loggers.py",
    "precision/test_precision_ddp.py",
    "reliability/",
    "docs/",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.replace("\\", "/")
        return next((i for i, part in enumerate(_SLOW_FIRST) if part in path), len(_SLOW_FIRST))

    items.sort(key=rank)
