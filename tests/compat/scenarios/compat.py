"""What every differential scenario imports: the Fabric API of the framework under test and a recorder.

A scenario runs as ``python SCENARIO.py FRAMEWORK OUTDIR`` where FRAMEWORK is ``lightning`` or
``weft``. It uses only the names in :data:`api` (``Fabric``, ``seed_everything``, ...), records what
it observes with :class:`Recorder`, and each rank writes ``OUTDIR/FRAMEWORK.rankN.json``. The test
runs the scenario under both frameworks and compares the files (``tests/compat/harness.py``).

``COMPAT_BREAK=name`` (weft runs only) applies a deliberate breakage from ``breakages.py`` first,
so a test can show that its comparison fails when the feature it checks is broken.
"""

from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path

FRAMEWORK = sys.argv[1]
OUT = Path(sys.argv[2])
if FRAMEWORK not in ("lightning", "weft"):
    raise SystemExit(f"usage: {sys.argv[0]} lightning|weft OUTDIR")


def _load_api() -> types.SimpleNamespace:
    if FRAMEWORK == "lightning":
        import lightning.fabric as fabric_pkg
        from lightning.fabric.loggers import CSVLogger
        from lightning.fabric.strategies import DDPStrategy, SingleDeviceStrategy

        return types.SimpleNamespace(
            name="lightning",
            Fabric=fabric_pkg.Fabric,
            seed_everything=fabric_pkg.seed_everything,
            DDPStrategy=DDPStrategy,
            SingleDeviceStrategy=SingleDeviceStrategy,
            CSVLogger=CSVLogger,
        )
    import weft

    if os.environ.get("COMPAT_BREAK"):
        import breakages

        breakages.apply(os.environ["COMPAT_BREAK"])

    def strategies(name):
        import weft.strategies

        return getattr(weft.strategies, name)

    return types.SimpleNamespace(
        name="weft",
        Fabric=weft.Fabric,
        seed_everything=weft.seed_everything,
        DDPStrategy=lambda *a, **k: strategies("DDPStrategy")(*a, **k),
        SingleDeviceStrategy=lambda *a, **k: strategies("SingleDeviceStrategy")(*a, **k),
        CSVLogger=lambda *a, **k: __import__("weft.loggers", fromlist=["CSVLogger"]).CSVLogger(*a, **k),
    )


api = _load_api()


def _builtin_classes(exc: BaseException) -> list[str]:
    """The builtin exception classes an exception is an instance of, most specific first."""
    return [c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins" and c not in (object, BaseException)]


def _plain(value):
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.double()
        return {"tensor": value.tolist(), "shape": list(value.shape)}
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return repr(value)


def epochs(loader, count=2):
    """The batches of ``count`` passes over ``loader``, as lists of ints."""
    return [[batch.tolist() for batch in loader] for _ in range(count)]


class Recorder:
    """Observations of one rank, written as JSON when the scenario ends."""

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank
        self.data: dict[str, object] = {}

    def put(self, key: str, value) -> None:
        if key in self.data:
            raise KeyError(f"observation {key!r} recorded twice")
        self.data[key] = _plain(value)

    def error(self, key: str, function, *args, **kwargs):
        """Call ``function``; record the builtin classes of what it raised (or that it raised nothing)."""
        try:
            result = function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - what was raised is the observation
            self.data[key] = {"raised": _builtin_classes(exc), "message": str(exc)[:300]}
            return None
        self.data[key] = {"raised": None}
        return result

    def write(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{FRAMEWORK}.rank{self.rank}.json"
        path.write_text(json.dumps(self.data, indent=1, sort_keys=True))
