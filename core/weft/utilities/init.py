"""Building modules faster when their weights are about to be overwritten.

.. versionadded:: 0.3
"""

from __future__ import annotations

from typing import Any


def skip_init() -> Any:
    """A context in which ``torch.nn.init`` functions return their tensor untouched.

    For strategies' ``weft_strategy_module_init_context`` under ``empty_init=True``: the
    parameters come from a checkpoint or an init function later, so the (slow) default
    initialisation is skipped. The tensors hold whatever memory they were given.

    Example::

        with skip_init():
            model = torch.nn.Linear(4096, 4096)  # uninitialised weights
    """
    from torch.overrides import TorchFunctionMode

    class _SkipInit(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if getattr(func, "__module__", None) == "torch.nn.init":
                return kwargs["tensor"] if "tensor" in kwargs else args[0]
            return func(*args, **kwargs)

    return _SkipInit()
