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
