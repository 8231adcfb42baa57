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

    def __getitem__(self, index: Any) -> Any:
        # Indexing a container module (nn.Sequential, nn.ModuleList) reaches the user's module.
        return self._original_module[index]

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

    def zero_grad(self, set_to_none: bool = True) -> None:
        # Called every step: run it on the user's optimizer, not inherited with this wrapper as
        # `self` (each attribute it reads would miss here and fall through __getattr__, ~3 us).
        self._optimizer.zero_grad(set_to_none=set_to_none)

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
    epoch and a loaded loader resumes at the next unseen batch, in the same order.

    The order of an epoch comes from random draws the DataLoader makes when the
    epoch starts (the sampler's shuffle seed and the workers' base seed, from the
    global torch generator unless the loader has its own ``generator``). The states
    of those generators at the start of the epoch are part of :meth:`state_dict`;
    a resumed epoch replays the draws from them, then puts the global generator
    back, so the rest of the run sees the generator it restored from the checkpoint.
    """

    _classes: dict[type, type] = {}

    def __init__(self, loader: Any, device: torch.device | None) -> None:
        object.__setattr__(self, "_loader", loader)
        object.__setattr__(self, "_device", device)
        object.__setattr__(self, "_epoch", 0)
        object.__setattr__(self, "_batches_consumed", 0)
        object.__setattr__(self, "_iterated", False)
        object.__setattr__(self, "_resume", None)
        object.__setattr__(self, "_epoch_generators", None)
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
            epoch, skip, generators = self._resume
        elif self._iterated:
            epoch, skip, generators = self._epoch + 1, 0, None  # a new pass over the loader is a new epoch
        else:
            epoch, skip, generators = self._epoch, 0, None
        set_ = object.__setattr__
        set_(self, "_resume", None)
        set_(self, "_iterated", True)
        set_(self, "_epoch", epoch)
        set_(self, "_batches_consumed", skip)
        loader = self._loader
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if skip:
            set_(self, "_epoch_generators", generators)
            iterator = _skip_batches(loader, skip, generators)
        else:
            set_(self, "_epoch_generators", _generator_states(loader))
            iterator = iter(loader)
        device = self._device
        consumed = skip
        for batch in iterator:
            if device is not None:
                batch = _move(batch, device)
            consumed += 1
            set_(self, "_batches_consumed", consumed)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The data position: the epoch, how many of its batches were handed out, and the
        generator states the epoch's order was drawn from (tensors: safe for ``weights_only``)."""
        state: dict[str, Any] = {"epoch": self._epoch, "batches_consumed": self._batches_consumed}
        if self._epoch_generators is not None:
            state["generators"] = dict(self._epoch_generators)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration continues that epoch at its next unseen batch, in the same order."""
        from weft.errors import CheckpointError

        if not isinstance(state, dict) or "epoch" not in state or "batches_consumed" not in state:
            raise CheckpointError(
                f"A data loader's entry must be a dict with 'epoch' and 'batches_consumed' (written by "
                f"loader.state_dict()); got {state!r:.200}"
            )
        epoch, consumed = int(state["epoch"]), int(state["batches_consumed"])
        if epoch < 0 or consumed < 0:
            raise CheckpointError(f"A data loader's position cannot be negative: epoch={epoch}, batches_consumed={consumed}")
        generators = state.get("generators")
        if _has_len(self._loader) and consumed >= len(self._loader):
            epoch, consumed, generators = epoch + 1, 0, None  # the saved epoch was complete
        object.__setattr__(self, "_resume", (epoch, consumed, generators))
        object.__setattr__(self, "_iterated", True)
        object.__setattr__(self, "_epoch", epoch)
        object.__setattr__(self, "_batches_consumed", consumed)
        object.__setattr__(self, "_epoch_generators", generators)

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


def _own_generators(loader: Any) -> dict[str, torch.Generator]:
    """The generators a loader draws from besides the global one: its own and its sampler's."""
    found = {}
    if isinstance(getattr(loader, "generator", None), torch.Generator):
        found["loader"] = loader.generator
    sampler_generator = getattr(getattr(loader, "sampler", None), "generator", None)
    if isinstance(sampler_generator, torch.Generator) and sampler_generator is not found.get("loader"):
        found["sampler"] = sampler_generator
    return found


def _generator_states(loader: Any) -> dict[str, torch.Tensor]:
    """States of the generators an epoch's order is drawn from, taken just before the epoch draws them."""
    states = {"torch": torch.get_rng_state()}
    for name, generator in _own_generators(loader).items():
        states[name] = generator.get_state()
    return states


def _skip_batches(loader: Any, count: int, generators: dict[str, torch.Tensor] | None = None) -> Iterator[Any]:
    """Iterate ``loader`` from batch ``count`` on, in the order of the epoch that was interrupted.

    :param generators: the generator states at that epoch's start (see :func:`_generator_states`);
        the epoch's draws are replayed from them, and the global generator is put back afterwards.
        ``None`` draws from the generators as they are.

    With ``num_workers=0`` the skipped batches' indices are drawn but their samples are
    never read. With workers, the skipped batches are loaded and dropped, so every worker
    sees the same samples (and advances its own generator) as in the uninterrupted epoch.
    """
    current = torch.get_rng_state()
    own = _own_generators(loader)
    if generators is not None:
        torch.set_rng_state(generators["torch"])
        for name, generator in own.items():
            if name in generators:
                generator.set_state(generators[name])
    try:
        iterator = iter(loader)
        indices = getattr(iterator, "_sampler_iter", None)
        if getattr(loader, "num_workers", 0) == 0 and indices is not None:
            # The single-process iterator draws index batches lazily from `_sampler_iter`:
            # advancing it skips batches without fetching their samples.
            for _ in range(count):
                if next(indices, None) is None:
                    break
        else:
            for _ in range(count):
                if next(iterator, _END) is _END:
                    break
    finally:
        if generators is not None:
            # Global draws after this point must match the uninterrupted run's, which the
            # checkpoint's RNG entry (if any) restored: the replay must not advance it.
            torch.set_rng_state(current)
    yield from iterator


_END = object()


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
