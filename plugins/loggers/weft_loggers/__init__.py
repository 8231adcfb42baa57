"""weft-loggers: first-party logger plugins for weft.

``Fabric(loggers="tensorboard")`` selects :class:`~weft_loggers.tensorboard.TensorBoardLogger`
through the ``weft.loggers`` entry point; nothing here is imported until then, so that
``import weft`` stays light and tensorboard is loaded only by those who log with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["TensorBoardLogger"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import weft_loggers` does not import torch's tensorboard writer.
    if name == "TensorBoardLogger":
        from weft_loggers.tensorboard import TensorBoardLogger

        return TensorBoardLogger
    raise AttributeError(f"module 'weft_loggers' has no attribute {name!r}")


if TYPE_CHECKING:
    from weft_loggers.tensorboard import TensorBoardLogger
