"""``AttributeDict``: a dict whose keys read and write as attributes, for a program's state.

Behaves as ``lightning.fabric.utilities.AttributeDict`` (including its ``repr``), so a state
built with it can be passed to ``fabric.save``/``fabric.load`` like any dict.
"""

from __future__ import annotations

from typing import Any


class AttributeDict(dict):
    """``state = AttributeDict(model=model, step=0); state.step += 1``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{key}'") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]  # a KeyError for a missing key, as in Lightning

    def __repr__(self) -> str:
        # One `"key": value` line per key, sorted, values aligned: Lightning's layout.
        if not self:
            return ""
        width = max(len(str(key)) for key in self) + 3
        rows = []
        for key in sorted(self):
            label = '"' + str(key) + '":'
            rows.append(f"{label:{width}s} {self[key]}")
        return "\n".join(rows)
