"""What :meth:`Fabric.setup` returns: modules, optimizers and data loaders that behave like
the user's own objects, with the precision and strategy plugged in.

Each wrapper resolves the hooks it needs once, when it is created, so the
per-step path calls plugin code directly instead of dispatching through pluggy.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

if TYPE_CHECKING:
    from weft.fabric import Fabric


class _FabricModule(nn.Module):
    """Runs the forward of the strategy-wrapped module under the precision's context.

    Attribute access falls through to the user's module, and ``state_dict``/
    ``load_state_dict`` use the user's module, so keys carry no wrapper prefixes.
    """

    def __init__(self, forward_module: nn.Module, original_module: nn.Module, fabric: Fabric) -> None:
        super().__init__()
        self._forward_module = forward_module
        self._original_module = original_module
        self._fabric = fabric
        context, convert_in, convert_out = fabric._forward_hooks()
        if context is None and convert_in is None and convert_out is None:
            # Nothing to add: call the wrapped module directly (no extra Python frame).
            self.forward = forward_module.__call__
        else:
            self._context, self._convert_in, self._convert_out = context, convert_in, convert_out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._convert_in is not None:
            args, kwargs = self._convert_in(data=(args, kwargs))
        if self._context is not None:
            with self._context():
                output = self._forward_module(*args, **kwargs)
        else:
            output = self._forward_module(*args, **kwargs)
        if self._convert_out is not None:
            output = self._convert_out(data=output)
        return output

    @property
    def module(self) -> nn.Module:
        """The user's module (for DDP, the module inside the ``DistributedDataParallel``)."""
        return self._original_module

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self._original_module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self._original_module.load_state_dict(state_dict, strict=strict, assign=assign)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            original = self.__dict__.get("_modules", {}).get("_original_module")
            if original is None:
                raise
            return getattr(original, name)

    def __repr__(self) -> str:
        return f"FabricModule({self._original_module!r})"


class _FabricOptimizer:
    """Steps through the precision and strategy; everything else is the user's optimizer.

    Instances are of a class made on the fly that also derives from the user's
    optimizer class, so ``isinstance(opt, torch.optim.AdamW)`` stays true.
    Reads fall through to the wrapped optimizer; writes to attributes it already
    has go to it too, so both always agree (``load_state_dict`` included).
    """

    _classes: dict[type, type] = {}

    def __init__(self, optimizer: torch.optim.Optimizer, step: Callable[..., Any]) -> None:
        object.__setattr__(self, "_optimizer", optimizer)
        object.__setattr__(self, "_weft_step", step)
        cls = type(optimizer)
        if cls not in self._classes:
            self._classes[cls] = type("Fabric" + cls.__name__, (_FabricOptimizer, cls), {})
        object.__setattr__(self, "__class__", self._classes[cls])

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The user's optimizer."""
        return self._optimizer

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        return self._weft_step(closure)

    def state_dict(self) -> dict[str, Any]:
        return self._optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._optimizer.load_state_dict(state_dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_optimizer"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        optimizer = object.__getattribute__(self, "_optimizer")
        if name in optimizer.__dict__:
            setattr(optimizer, name, value)
        else:
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"FabricOptimizer({self._optimizer!r})"


class _FabricDataLoader:
    """Iterates the user's loader, moves batches to the device and advances the sampler's epoch.

    Also derives from the loader's class so ``isinstance(loader, DataLoader)`` holds.
    It counts batches handed out, so :meth:`state_dict` records the position in the
    epoch and a loaded loader resumes at the next unseen batch.
    """

    _classes: dict[type, type] = {}

    def __init__(self, loader: Any, device: torch.device | None) -> None:
        object.__setattr__(self, "_loader", loader)
        object.__setattr__(self, "_device", device)
        object.__setattr__(self, "_epoch", 0)
        object.__setattr__(self, "_batches_consumed", 0)
        object.__setattr__(self, "_iterated", False)
        object.__setattr__(self, "_resume", None)
        cls = type(loader)
        if cls not in self._classes:
            self._classes[cls] = type("Fabric" + cls.__name__, (_FabricDataLoader, cls), {})
        object.__setattr__(self, "__class__", self._classes[cls])

    @property
    def loader(self) -> Any:
        """The user's loader (with a distributed sampler when the strategy asked for one)."""
        return self._loader

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Any]:
        if self._resume is not None:
            epoch, skip = self._resume
        elif self._iterated:
            epoch, skip = self._epoch + 1, 0  # a new pass over the loader is a new epoch
        else:
            epoch, skip = self._epoch, 0
        set_ = object.__setattr__
        set_(self, "_resume", None)
        set_(self, "_iterated", True)
        set_(self, "_epoch", epoch)
        set_(self, "_batches_consumed", skip)
        loader = self._loader
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        iterator = _skip_batches(loader, skip) if skip else iter(loader)
        device = self._device
        consumed = skip
        for batch in iterator:
            if device is not None:
                batch = _move(batch, device)
            consumed += 1
            set_(self, "_batches_consumed", consumed)
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The data position: the epoch and how many of its batches were already handed out."""
        return {"epoch": self._epoch, "batches_consumed": self._batches_consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration continues that epoch at its next unseen batch."""
        epoch, consumed = int(state["epoch"]), int(state["batches_consumed"])
        if _has_len(self._loader) and consumed >= len(self._loader):
            epoch, consumed = epoch + 1, 0  # the saved epoch was complete
        object.__setattr__(self, "_resume", (epoch, consumed))
        object.__setattr__(self, "_epoch", epoch)
        object.__setattr__(self, "_batches_consumed", consumed)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_loader"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._loader, name, value)

    def __repr__(self) -> str:
        return f"FabricDataLoader({self._loader!r})"


def _has_len(loader: Any) -> bool:
    try:
        len(loader)
    except TypeError:
        return False
    return True


def _skip_batches(loader: Any, count: int) -> Iterator[Any]:
    """Iterate ``loader`` from batch ``count`` on, without loading the skipped samples when possible."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    if batch_sampler is not None and getattr(loader, "num_workers", 0) == 0 and hasattr(loader, "dataset"):
        # Draw the same batches of indices as a fresh epoch would, drop the first `count`,
        # and fetch only the rest: the order is identical, the skipped data is never read.
        indices = iter(batch_sampler)
        for _ in range(count):
            next(indices, None)
        fetch = loader.dataset.__getitem__
        collate = loader.collate_fn
        for batch_indices in indices:
            yield collate([fetch(i) for i in batch_indices])
        return
    iterator = iter(loader)
    for _ in range(count):
        next(iterator, None)
    yield from iterator


def _move(batch: Any, device: torch.device) -> Any:
    from weft.utilities.apply import move_to_device

    return move_to_device(batch, device)


def unwrap(obj: Any) -> Any:
    """The user's object behind a weft wrapper (modules, optimizers); anything else as is."""
    if isinstance(obj, _FabricModule):
        return obj._original_module
    if isinstance(obj, _FabricOptimizer):
        return obj._optimizer
    return obj


def no_context() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()
