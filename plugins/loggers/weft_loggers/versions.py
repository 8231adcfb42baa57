"""Choose the ``version_N`` folder of a new run, as Lightning's loggers do."""

from __future__ import annotations

import os
import re

_VERSION = re.compile(r"version_(\d+)$")


def next_version(folder: str) -> int:
    """One more than the highest ``version_N`` folder in ``folder``; 0 when there is none (or no folder)."""
    try:
        entries = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    found = [int(m.group(1)) for e in entries if (m := _VERSION.match(e)) and os.path.isdir(os.path.join(folder, e))]
    return max(found) + 1 if found else 0
