"""Check the core version range a plugin distribution declares (``Requires-Dist: weft>=0.1,<0.2``).

A small comparator for release numbers keeps core free of a ``packaging`` dependency.
"""

from __future__ import annotations

import re
from typing import Any

import weft


def _release(text: str) -> tuple[int, ...]:
    parts = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in parts.group(1).split(".")) if parts else ()


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def satisfies(version: str, specifier: str) -> bool:
    """Whether ``version`` meets every clause of ``specifier`` (``>=0.1,<0.2``, ``~=0.1``, ``==0.1.*``)."""
    have = _release(version)
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        match = re.match(r"(~=|==|!=|>=|<=|>|<)\s*(.+)", clause)
        if not match:
            continue
        op, text = match.groups()
        if text.endswith(".*"):
            prefix = _release(text[:-2])
            equal = have[: len(prefix)] == prefix
            if (op == "==" and not equal) or (op == "!=" and equal):
                return False
            continue
        want = _release(text)
        c = _cmp(have, want)
        ok = {
            "==": c == 0, "!=": c != 0, ">=": c >= 0, "<=": c <= 0, ">": c > 0, "<": c < 0,
            "~=": c >= 0 and have[: max(len(want) - 1, 1)] == want[: max(len(want) - 1, 1)],
        }[op]
        if not ok:
            return False
    return True


def incompatibility(record: Any) -> str:
    """A sentence saying why ``record``'s distribution does not support this core, or ``''``."""
    spec = getattr(record, "requires_core", None)
    if not spec or satisfies(weft.__version__, spec):
        return ""
    return (
        f"{record.distribution} {record.version} supports weft{spec}, but weft {weft.__version__} is installed; "
        f"upgrade {record.distribution} or install a matching weft"
    )
