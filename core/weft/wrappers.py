"""What :meth:`Fabric.setup` returns: modules, optimizers and data loaders that behave like
the user's own objects, with the precision and strategy plugged in.

Each wrapper resolves the hooks it needs once, when it is created, so the
per-step path calls plugin code directly instead of dispatching through pluggy.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from types import MethodType
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

if TYPE_CHECKING:
    from weft.fabric import Fabric


# Methods that run through the strategy's forward without being marked (Lightning's list).
_STEP_METHODS = ("training_step", "validation_step", "test_step", "predict_step")
_MISSING = object()


class _FabricModule(nn.Module):
    """Runs the forward of the strategy-wrapped module under the precision's context.

    It stands in for the user's module, by Lightning's rules:

    * ``state_dict``/``load_state_dict`` use the user's module, so keys carry no wrapper
      (nor ``torch.compile``) prefixes;
    * reading an attribute the wrapper lacks reads the user's module; writing one writes the
      user's module, and also the wrapper when the wrapper has that name; deleting one
      deletes it where it is;
    * when setup changed how the module is called (DDP, FSDP, ``torch.compile``: ``routed``),
      ``training_step``/``validation_step``/``test_step``/``predict_step`` and methods marked
      with :meth:`mark_forward_method` run through the strategy's forward, and any other
      method of the user's module that runs a submodule raises: it bypassed the strategy
      (under DDP, its gradients would not be averaged and the replicas would drift apart).

    :param forward_module: what the strategy made of the user's module (e.g. the DDP module).
    :param original_module: the user's module (uncompiled).
    :param compiled: ``forward_module`` compiled like the module the user passed, or ``None``.
    :param routed: whether setup changed how the module is called (see above).
    :param device: what ``model.device`` reports until ``model.to(...)`` moves it.
    """

    def __init__(
        self,
        forward_module: nn.Module,
        original_module: nn.Module,
        fabric: Fabric,
        *,
        compiled: nn.Module | None = None,
        routed: bool = False,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self._forward_module = forward_module
        self._original_module = original_module
        if compiled is not None:
            self._compiled_module = compiled
        # The strategy's own module stays `_forward_module` (no_backward_sync and clipping need the
        # DDP/FSDP module); calls go through the compiled one when there is one.
        call = (forward_module if compiled is None else compiled).__call__
        self._weft_call = call
        self._weft_strategy = fabric.strategy_name
        self._weft_routed = routed
        self._weft_device = device if device is not None else _device_of(original_module)
        self._weft_redirects: dict[str, _Redirect] = {}
        self._forward_methods = set(_STEP_METHODS)
        context, convert_in, convert_out = fabric._forward_hooks()
        if context is None and convert_in is None and convert_out is None:
            # Nothing to add: call the wrapped module directly (no extra Python frame).
            self.forward = call
        else:
            self._context, self._convert_in, self._convert_out = context, convert_in, convert_out
        self._weft_ready = True  # from here on, attribute writes follow Lightning's rules

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # A precision hook answering None did not handle the call: inputs and outputs pass
        # through unchanged and no context is entered, as when nobody implements the hook.
        if self._convert_in is not None:
            converted = self._convert_in(data=(args, kwargs))
            if converted is not None:
                args, kwargs = converted
        context = None if self._context is None else self._context()
        if context is not None:
            with context:
                output = self._weft_call(*args, **kwargs)
        else:
            output = self._weft_call(*args, **kwargs)
        if self._convert_out is not None:
            converted = self._convert_out(data=output)
            if converted is not None:
                output = converted
        return output

    @property
    def module(self) -> nn.Module:
        """The user's module (for DDP, the module inside the ``DistributedDataParallel``)."""
        return self._original_module

    @property
    def device(self) -> torch.device:
        """Where the model computes: this process's device (with ``setup(move_to_device=False)``,
        where its first parameter was), then wherever ``model.to(...)`` moved it."""
        return self._weft_device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's floating-point parameters (buffers when it has none, else
        torch's default dtype)."""
        for tensors in (self._original_module.parameters(), self._original_module.buffers()):
            for tensor in tensors:
                if tensor.is_floating_point():
                    return tensor.dtype
        return torch.get_default_dtype()

    @dtype.setter
    def dtype(self, value: Any) -> None:
        from weft.errors import MisuseError

        raise MisuseError(f"model.dtype = {value!r}: the dtype follows the parameters; convert them with model.to({value!r})")

    def to(self, *args: Any, **kwargs: Any) -> _FabricModule:
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:
            self.__dict__["_weft_device"] = device
        return super().to(*args, **kwargs)

    def cuda(self, device: Any = None) -> _FabricModule:
        if not isinstance(device, torch.device):
            device = torch.device("cuda", torch.cuda.current_device() if device is None else device)
        self.__dict__["_weft_device"] = device
        return super().cuda(device)

    def cpu(self) -> _FabricModule:
        self.__dict__["_weft_device"] = torch.device("cpu")
        return super().cpu()

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        return self._original_module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self._original_module.load_state_dict(state_dict, strict=strict, assign=assign)

    def mark_forward_method(self, method: MethodType | str) -> None:
        """Run ``method`` of the user's module through the strategy's forward, as ``forward`` is.

        Under DDP or FSDP a method that runs the model must go through the strategy's forward,
        or its gradients are not synchronised. The step methods (``training_step``...) are
        marked already.

        :param method: the method's name, or the method itself (``model.module.generate``).
        """
        from weft.errors import MisuseAttributeError, MisuseTypeError, MisuseValueError

        if not isinstance(method, (MethodType, str)):
            raise MisuseTypeError(
                f"mark_forward_method() takes a method or its name (a str), got {type(method).__name__}: {method!r:.80}"
            )
        name = method if isinstance(method, str) else method.__name__
        if name == "forward":
            raise MisuseValueError("mark_forward_method('forward'): forward runs through the strategy already; mark other methods")
        original = self._original_module
        if not isinstance(getattr(original, name, None), MethodType):
            raise MisuseAttributeError(
                f"mark_forward_method({name!r}): {type(original).__name__}.{name} does not exist or is not a method"
            )
        self._forward_methods.add(name)

    def _weft_through_forward(self, name: str) -> Callable[..., Any]:
        """``name`` of the user's module, called through the strategy's forward (Lightning's way:
        the user's ``forward`` is swapped for the method during one call of the wrapped module)."""
        redirect = self._weft_redirects.get(name)
        if redirect is None:
            # One per name, so a compiled module sees the same object every call (no recompiles).
            redirect = self._weft_redirects[name] = _Redirect(self._original_module, name)
        forward = self.forward

        def call(*args: Any, **kwargs: Any) -> Any:
            redirect.patch()
            try:
                return forward(*args, **kwargs)
            finally:
                redirect.restore()  # also when the strategy failed before reaching the method

        return call

    def _weft_tracked(self, method: MethodType, name: str) -> Callable[..., Any]:
        """``method`` of the user's module, refused once it runs a submodule outside forward.

        Lightning checks after the method returned; this stops at the first layer call, before
        the layer runs (no computation that bypassed the strategy, no FSDP state left half-way),
        and checks again afterwards in case the method caught that error itself.
        """
        original, strategy = self._original_module, self._weft_strategy

        def refusal() -> Exception:
            from weft.errors import MisuseError

            return MisuseError(
                f"{type(original).__name__}.{name}() runs the model's layers outside its forward, so it bypasses "
                f"what fabric.setup() put around the model (strategy {strategy!r}, or torch.compile): under DDP or "
                f"FSDP its gradients would not be synchronised. Mark it after fabric.setup(): "
                f"model.mark_forward_method({name!r}), and it runs through the strategy's forward."
            )

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            ran = []

            def hook(*_: Any) -> None:
                ran.append(True)
                raise refusal()

            # First among the hooks: FSDP's must not unshard a layer that will not run.
            handles = [module.register_forward_pre_hook(hook, prepend=True) for module in original.modules()]
            try:
                output = method(*args, **kwargs)
            finally:
                for handle in handles:
                    handle.remove()
            if ran:
                raise refusal()
            return output

        return call

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails. nn.Module keeps submodules in `_modules`.
        state = self.__dict__
        modules = state.get("_modules", {})
        original = modules.get("_original_module")
        routed = state.get("_weft_routed", False)
        if routed and name in state["_forward_methods"] and isinstance(getattr(original, name, None), MethodType):
            return self._weft_through_forward(name)
        if name in modules or name in state.get("_parameters", {}) or name in state.get("_buffers", {}) or original is None:
            return super().__getattr__(name)
        attribute = getattr(original, name)
        if routed and isinstance(attribute, MethodType):
            return self._weft_tracked(attribute, name)
        return attribute

    def _weft_has(self, name: str) -> bool:
        """Whether the wrapper itself has ``name`` (what Lightning tests with ``name in dir(self)``)."""
        state = self.__dict__
        if name in state or name in state["_parameters"] or name in state["_modules"] or name in state["_buffers"]:
            return True
        return any(name in vars(cls) for cls in type(self).__mro__)

    def __setattr__(self, name: str, value: Any) -> None:
        if not self.__dict__.get("_weft_ready"):
            super().__setattr__(name, value)
            return
        original = self._original_module
        on_wrapper = self._weft_has(name)
        if not on_wrapper or hasattr(original, name):
            setattr(original, name, value)
        if on_wrapper:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if not self.__dict__.get("_weft_ready"):
            super().__delattr__(name)
            return
        state = self.__dict__
        own = name in state or name in state["_parameters"] or name in state["_modules"] or name in state["_buffers"]
        original = self._original_module
        if not own or hasattr(original, name):
            delattr(original, name)  # raises AttributeError when neither has it
        if own:
            super().__delattr__(name)

    def __getitem__(self, index: Any) -> Any:
        # Indexing a container module (nn.Sequential, nn.ModuleList) reaches the user's module.
        return self._original_module[index]

    def __repr__(self) -> str:
        return f"FabricModule({self._original_module!r})"


class _Redirect:
    """Stands in for the user's module's ``forward`` during one call of the strategy's module.

    DDP and FSDP do their work around ``module(...)``: while patched, what that call reaches is
    the method ``name`` instead of ``forward``. The method may call ``forward`` itself, so the
    patch is undone as soon as the call arrives.
    """

    __slots__ = ("module", "name", "saved")

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module, self.name, self.saved = module, name, _MISSING

    def patch(self) -> None:
        state = self.module.__dict__
        self.saved = state.get("forward", _MISSING)
        state["forward"] = self

    def restore(self) -> None:
        state = self.module.__dict__
        if state.get("forward") is self:
            if self.saved is _MISSING:
                del state["forward"]
            else:
                state["forward"] = self.saved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.restore()
        return getattr(self.module, self.name)(*args, **kwargs)


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.get_default_device()


def unwrap_compiled(module: nn.Module) -> tuple[nn.Module, Callable[[nn.Module], nn.Module] | None]:
    """``(module, None)``, or for a ``torch.compile``d module ``(the module inside, a function that
    compiles another module the same way)``.

    torch._dynamo is only consulted when already imported: a compiled module imported it.
    """
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    optimized = getattr(eval_frame, "OptimizedModule", None)
    if optimized is None or not isinstance(module, optimized):
        return module, None
    return module._orig_mod, module.dynamo_ctx


def _call_hooks(module: nn.Module) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The hooks that run around ``module(...)``. A strategy that adds some (FSDP2 does) has
    changed how the module is called, as one that wraps it (DDP) has."""
    return tuple(module._forward_pre_hooks), tuple(module._forward_hooks)


def _check_placed(module: nn.Module, device: torch.device) -> None:
    """``setup(move_to_device=False)`` under several processes: the strategy computes on
    ``device`` and would move the model there, against the request; refuse instead."""
    elsewhere = {
        str(t.device) for tensors in (module.parameters(), module.buffers()) for t in tensors
        if t.device != device and t.device.type != "meta"  # meta: the strategy materialises it
    }
    if elsewhere:
        from weft.errors import MisuseValueError

        raise MisuseValueError(
            f"setup(move_to_device=False): the model is on {', '.join(sorted(elsewhere))}, but this process "
            f"computes on {device} and its strategy needs the model there. Move it first "
            "(model = fabric.to_device(model)) or leave move_to_device=True."
        )


def _only_closure(args: tuple, kwargs: dict, strategy: str, optimizer: torch.optim.Optimizer) -> None:
    """A strategy that steps the optimizer itself (``weft_strategy_optimizer_step``) takes no
    step arguments but a closure: refuse others rather than drop them."""
    extra = [repr(a)[:40] for a in args[1:]] + [f"{k}=..." for k in kwargs if k != "closure"]
    if args and not (args[0] is None or callable(args[0])):
        extra.insert(0, repr(args[0])[:40])
    if extra:
        from weft.errors import MisuseTypeError

        raise MisuseTypeError(
            f"optimizer.step({', '.join(extra)}): strategy {strategy!r} performs the step of "
            f"{type(optimizer).__name__} itself and can pass on only a closure. Call optimizer.step() "
            "without these arguments, or use a strategy that calls the optimizer's own step."
        )


class _FabricOptimizer:
    """Steps through the precision and strategy; everything else is the user's optimizer.

    Instances are of a class made on the fly that also derives from the user's
    optimizer class, so ``isinstance(opt, torch.optim.AdamW)`` stays true.
    Reads fall through to the wrapped optimizer; writes to attributes it already
    has go to it too, so both always agree (``load_state_dict`` included).
    ``step`` and ``zero_grad`` pass every argument on, for optimizers with their own signature.
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

    def step(self, *args: Any, **kwargs: Any) -> Any:
        return self._weft_step(*args, **kwargs)

    def zero_grad(self, *args: Any, **kwargs: Any) -> Any:
        # Called every step: run it on the user's optimizer, not inherited with this wrapper as
        # `self` (each attribute it reads would miss here and fall through __getattr__, ~3 us).
        return self._optimizer.zero_grad(*args, **kwargs)

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

    Each rank draws its epoch from its own generators. With several ranks the saved state
    holds every rank's epoch-start states (``rank_generators``, read through ``exchange``,
    see :class:`weft.utilities.data.EpochStartExchange`) and each rank resumes from its own;
    a position in the middle of an epoch resumes only with the world size that saved it.

    :param rank: this process's global rank; :param world_size: the number of processes.
    :param exchange: where the ranks leave their epoch-start states (``None``: one process,
        or no process group to go through).
    """

    _classes: dict[type, type] = {}

    def __init__(
        self, loader: Any, device: torch.device | None, rank: int = 0, world_size: int = 1, exchange: Any = None
    ) -> None:
        object.__setattr__(self, "_loader", loader)
        object.__setattr__(self, "_device", device)
        object.__setattr__(self, "_rank", rank)
        object.__setattr__(self, "_world_size", world_size)
        object.__setattr__(self, "_exchange", exchange)
        object.__setattr__(self, "_rank_generators", None)  # every rank's, as loaded, until the next epoch starts
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
        _set_sampler_epoch(loader, epoch)
        if not skip:
            generators = _generator_states(loader)
        set_(self, "_epoch_generators", generators)
        set_(self, "_rank_generators", None)
        if self._exchange is not None:  # once per epoch: the writer of a checkpoint reads it
            self._exchange.publish(epoch, generators, _length(loader))
        iterator = _skip_batches(loader, skip, generators) if skip else iter(loader)
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
        length = _length(self._loader)
        state: dict[str, Any] = {
            "epoch": self._epoch, "batches_consumed": self._batches_consumed, "length": length, "world_size": self._world_size,
        }
        if self._epoch_generators is not None:
            state["generators"] = dict(self._epoch_generators)
            ranks = self._rank_generators
            if ranks is None and self._exchange is not None:
                ranks = self._exchange.collect(self._epoch, self._epoch_generators, length)
            if ranks is not None:
                state["rank_generators"] = list(ranks)
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
        generators, ranks = state.get("generators"), None
        length = state.get("length", _length(self._loader))  # older entries: the loader's length now
        if length is not None and consumed >= length:
            epoch, consumed, generators = epoch + 1, 0, None  # the saved epoch was complete
        elif consumed:
            # Mid-epoch: which batches remain depends on how the data was split between ranks,
            # and each rank's order and worker seeds on its own generators.
            generators, ranks = self._own_generators(state, epoch, consumed, generators)
        object.__setattr__(self, "_resume", (epoch, consumed, generators))
        object.__setattr__(self, "_iterated", True)
        object.__setattr__(self, "_epoch", epoch)
        object.__setattr__(self, "_batches_consumed", consumed)
        object.__setattr__(self, "_epoch_generators", generators)
        object.__setattr__(self, "_rank_generators", ranks)

    def _own_generators(self, state: dict[str, Any], epoch: int, consumed: int, generators: Any) -> tuple[Any, Any]:
        """This rank's epoch-start generator states in a mid-epoch entry, and every rank's."""
        from weft.errors import CheckpointError

        saved_world = state.get("world_size")
        where = f"epoch {epoch} after {consumed} batches"
        if saved_world is not None and int(saved_world) != self._world_size:
            raise CheckpointError(
                f"The checkpoint's data loader position ({where}) was saved by {int(saved_world)} processes and this "
                f"run has {self._world_size}: the remaining batches of that epoch depend on how the data was split "
                f"between ranks. Resume with {int(saved_world)} processes, or leave the loader out of the state passed "
                "to fabric.load (training then starts that epoch's data afresh), or save at the end of an epoch."
            )
        if self._world_size == 1:
            return generators, None
        ranks = state.get("rank_generators")
        if ranks is None:
            if generators is None:
                return None, None  # an entry without generator states: the epoch is redrawn as it is
            raise CheckpointError(
                f"The checkpoint's data loader position ({where}) holds one process's generator states, and this "
                f"run has {self._world_size} processes, each of which drew its epoch from its own: resuming would "
                "give every rank that one process's shuffle and worker seeds (an entry written before weft recorded "
                "every rank's states). Leave the loader out of the state passed to fabric.load, or resume on one process."
            )
        if len(ranks) != self._world_size:
            raise CheckpointError(
                f"The checkpoint's data loader position holds the generator states of {len(ranks)} processes, this "
                f"run has {self._world_size}. Resume with {len(ranks)} processes, or leave the loader out of the "
                "state passed to fabric.load."
            )
        return ranks[self._rank], list(ranks)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_loader"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._loader, name, value)

    def __repr__(self) -> str:
        return f"FabricDataLoader({self._loader!r})"


def _length(loader: Any) -> int | None:
    """``len(loader)``, or ``None`` for a loader without a length (an iterable dataset)."""
    try:
        return len(loader)
    except TypeError:
        return None


def _set_sampler_epoch(loader: Any, epoch: int) -> None:
    """Tell the loader's samplers the epoch, so a ``DistributedSampler`` reshuffles each epoch.

    Both places a sampler can sit are reached: ``loader.sampler`` and, for a loader built
    around a batch sampler, ``loader.batch_sampler.sampler`` (each sampler once).
    """
    samplers = [getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)]
    for i, sampler in enumerate(samplers):
        if sampler is None or any(sampler is other for other in samplers[:i]):
            continue
        set_epoch = getattr(sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def _samplers(loader: Any) -> dict[str, Any]:
    """The samplers that decide a loader's order, each once, by where they sit: ``sampler``,
    ``batch_sampler``, and those they wrap (``batch_sampler.sampler``, ``sampler.sampler``...)."""
    found: dict[str, Any] = {}
    queue = [("sampler", getattr(loader, "sampler", None)), ("batch_sampler", getattr(loader, "batch_sampler", None))]
    while queue:
        path, sampler = queue.pop(0)
        if sampler is None or path.count(".") > 3 or any(sampler is known for known in found.values()):
            continue
        found[path] = sampler
        queue.append((path + ".sampler", getattr(sampler, "sampler", None)))
    return found


def _own_generators(loader: Any) -> dict[str, torch.Generator]:
    """The generators a loader draws from besides the global one: its own and its samplers'
    (also one inside a batch sampler, or inside the sampler that splits a user's sampler between ranks)."""
    found = {}
    if isinstance(getattr(loader, "generator", None), torch.Generator):
        found["loader"] = loader.generator
    for path, sampler in _samplers(loader).items():
        generator = getattr(sampler, "generator", None)
        if isinstance(generator, torch.Generator) and not any(generator is known for known in found.values()):
            found[path] = generator
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
