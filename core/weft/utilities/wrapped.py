"""``is_wrapped``: whether an object came out of ``fabric.setup``/``setup_dataloaders``."""

from __future__ import annotations

from typing import Any

from weft.wrappers import _FabricDataLoader, _FabricModule, _FabricOptimizer, unwrap_compiled


def is_wrapped(obj: Any) -> bool:
    """True for the model, optimizers and data loaders weft's Fabric returned, also when the
    model was then passed to ``torch.compile``; False for anything else (the user's originals)."""
    inner, _ = unwrap_compiled(obj)
    return isinstance(inner, (_FabricModule, _FabricOptimizer, _FabricDataLoader))
