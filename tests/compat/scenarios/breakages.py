"""Deliberate breakages of weft, applied by name in a scenario's weft run (``COMPAT_BREAK=name``).

Each undoes one fidelity feature, so the differential test for that feature can show that its
comparison fails when the feature is broken. Breakages live in ``breakages_<topic>.py`` modules
beside this one, as functions registered with :func:`breakage`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

BREAKAGES = {}


def breakage(function):
    BREAKAGES[function.__name__] = function
    return function


def apply(name: str) -> None:
    for path in sorted(Path(__file__).parent.glob("breakages_*.py")):
        importlib.import_module(path.stem)
    if name not in BREAKAGES:
        raise SystemExit(f"unknown breakage {name!r}; known: {', '.join(sorted(BREAKAGES))}")
    BREAKAGES[name]()
