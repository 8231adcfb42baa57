"""Helpers for the logger tests: tests/kit's installer of *.dist-info plugins, and running the logger kit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# One installer for every kit test: tests/kit's, which writes real *.dist-info metadata.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kit"))

from kit_helpers import clean_env, install_dist_info, run  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent / "scripts"

__all__ = ["SCRIPTS", "clean_env", "install_dist_info", "run_logger_kit", "with_site"]


def with_site(*folders: Path) -> dict[str, str]:
    """A clean environment in which the distributions installed in ``folders`` are found."""
    return clean_env(PYTHONPATH=os.pathsep.join([*map(str, folders), os.environ.get("PYTHONPATH", "")]))


def run_logger_kit(logger: str, *extra: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120):
    """``pytest --weft-logger=LOGGER`` as a plugin author runs it: from a folder of their own, no test paths."""
    command = [sys.executable, "-m", "pytest", f"--weft-logger={logger}", "-q", "-p", "no:cacheprovider", "-rfEs", *extra]
    return run(command, timeout=timeout, env=env, cwd=cwd)
