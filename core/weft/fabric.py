"""``Fabric``: the one object a training script talks to.

``Fabric(strategy="fsdp")`` asks the registry for the plugins named, registers
them with a pluggy plugin manager and from then on reaches them only through
the hooks in :mod:`weft.hookspecs`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from typing import Any, Callable, ContextManager, Iterator

import pluggy
import torch
from torch import nn

from weft import hookspecs, registry
from weft.checkpoint import PRECISION_KEY
from weft.errors import ConfigurationError, MisuseError
from weft.utilities.apply import apply_to_tensors, move_to_device
from weft.utilities.rng import RNGState
from weft.wrappers import _FabricDataLoader, _FabricModule, _FabricOptimizer, unwrap

_REDUCE_OPS = ("sum", "mean", "max", "min")


class _Default(str):
    """A default string argument: equal to its text, but recognisably 'left unset'."""


class _DefaultInt(int):
    """A default int argument, recognisably 'left unset'."""


# `weft run` passes its flags to the script's Fabric through these variables.
CLI_ENV = {
    "accelerator": "WEFT_CLI_ACCELERATOR",
    "strategy": "WEFT_CLI_STRATEGY",
    "devices": "WEFT_CLI_DEVICES",
    "num_nodes": "WEFT_CLI_NUM_NODES",
    "precision": "WEFT_CLI_PRECISION",
}


def _hook_names(plugin: Any) -> set[str]:
    """The weft hooks a plugin object implements (methods marked with ``@weft.hookimpl``)."""
    cls = type(plugin)
    return {a for a in dir(cls) if a.startswith("weft_") and hasattr(getattr(cls, a, None), "weft_impl")}


def _plugin_kinds(plugin: Any) -> set[str]:
    """Which kinds a plugin object serves, read off the hooks it implements."""
    kinds = {name.split("_")[1] for name in _hook_names(plugin)}
    return kinds & {"accelerator", "precision", "strategy", "environment"}


def _sort_plugins(plugins: Any) -> tuple[dict[str, Any], list[Any]]:
    """Split ``plugins=`` into one plugin per kind and extras that span kinds or none."""
    given = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    by_kind: dict[str, Any] = {}
    extras = []
    for plugin in given:
        kinds = _plugin_kinds(plugin)
        if len(kinds) == 1:
            (kind,) = kinds
            if kind in by_kind:
                raise ConfigurationError(f"plugins= holds two {kind} plugins: {by_kind[kind]!r} and {plugin!r}")
            by_kind[kind] = plugin
        elif not _hook_names(plugin):
            raise ConfigurationError(
                f"plugins= holds {plugin!r}, which implements no weft hook: pass accelerator, strategy, "
                "precision or cluster environment plugins, or objects with @weft.hookimpl methods"
            )
        else:
            extras.append(plugin)
    return by_kind, extras


def _new_plugin_manager(plugins: dict[str, Any]) -> pluggy.PluginManager:
    """A plugin manager with weft's hook specifications and ``plugins`` (name -> object) registered."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


def _resolve(caller: Any) -> Callable[..., Any] | None:
    """One call target for a first-result hook: ``None`` when nobody implements it, the
    implementation itself when exactly one does (no dispatch cost), else the hook caller."""
    impls = caller.get_hookimpls()
    if not impls:
        return None
    if len(impls) == 1 and not (impls[0].hookwrapper or impls[0].wrapper):
        function, names = impls[0].function, impls[0].argnames
        return lambda **kwargs: function(*[kwargs[n] for n in names])
    return caller


class Fabric:
    """Run a PyTorch training loop on any accelerator, strategy and precision.

    :param accelerator: ``"cpu"``, ``"cuda"``, ``"gpu"``, ``"mps"``, ``"auto"`` or an accelerator plugin.
    :param strategy: ``"single_device"``, ``"ddp"``, ``"fsdp"``, ... ``"auto"`` or a strategy plugin.
    :param devices: processes per node: an int, ``-1`` (all), ``"auto"``, or device indices.
    :param num_nodes: number of machines.
    :param precision: ``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``, ... or a precision plugin.
    :param plugins: extra plugin objects (a cluster environment, a precision, or any
        object implementing weft hooks).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        accelerator: str | Any = _Default("auto"),
        strategy: str | Any = _Default("auto"),
        devices: int | str | list[int] = _Default("auto"),
        num_nodes: int = _DefaultInt(1),
        precision: str | int | Any = _Default("32-true"),
        plugins: Any = None,
    ) -> None:
        given = _apply_cli_defaults(
            {"accelerator": accelerator, "strategy": strategy, "devices": devices, "num_nodes": num_nodes, "precision": precision}
        )
        accelerator, strategy, devices, num_nodes, precision = (given[k] for k in ("accelerator", "strategy", "devices", "num_nodes", "precision"))
        _check_types(accelerator, strategy, devices, num_nodes, precision, plugins)

        by_kind, others = _sort_plugins(plugins)
        for kind, value in (("accelerator", accelerator), ("strategy", strategy), ("precision", precision)):
            if kind in by_kind and not (isinstance(value, _Default)):
                raise ConfigurationError(f"{kind} given twice: {kind}={value!r} and in plugins=; keep one")

        self._environment = by_kind.get("environment") or _detect_environment()
        self._accelerator = by_kind.get("accelerator") or _pick_accelerator(accelerator)
        self._precision = by_kind.get("precision") or _plugin_or_create("precisions", precision)
        self._num_nodes = int(num_nodes)
        # The strategy joins once the world size is known (it decides what "auto" means).
        self._pm = _new_plugin_manager(
            {"accelerator": self._accelerator, "environment": self._environment, "precision": self._precision}
        )
        hook = self._pm.hook

        self._external = bool(hook.weft_environment_creates_processes_externally())
        self._devices = self._parse_devices(devices)
        self._read_ranks()

        strategy = by_kind.get("strategy") or strategy
        if isinstance(strategy, str) and strategy == "auto":
            strategy = "single_device" if self._world_size == 1 else "ddp"
            if strategy == "ddp" and "ddp" not in registry.records("strategies"):
                raise ConfigurationError(
                    f"{self._world_size} processes need a multi-process strategy, and none is installed: "
                    "pip install weft-ddp (or pass devices=1)."
                )
        self._strategy = _plugin_or_create("strategies", strategy)
        self._pm.register(self._strategy, name="strategy")
        for index, plugin in enumerate(others):
            self._pm.register(plugin, name=f"extra-{index}")
        self._extras = others

        self._device: torch.device | None = None
        self._environment_ready = False
        self._launched = False
        self._modules_set_up = 0
        self._bind_hooks()
        hook.weft_validate(fabric=self)

    # ------------------------------------------------------------------ construction helpers

    def _parse_devices(self, devices: Any) -> list[int]:
        hook = self._pm.hook
        if self._external and isinstance(devices, _Default):
            local = os.environ.get("LOCAL_WORLD_SIZE")
            world = hook.weft_environment_world_size()
            if local is None and world is not None:
                local = str(max(1, int(world) // self._num_nodes))
            if local is not None:
                devices = int(local)
        parsed = hook.weft_accelerator_parse_devices(devices=devices)
        if parsed is None:
            raise ConfigurationError(f"The accelerator {self.accelerator_name!r} does not implement weft_accelerator_parse_devices")
        return list(parsed)

    def _read_ranks(self) -> None:
        """Ask the cluster environment for this process's place in the job."""
        hook = self._pm.hook
        expected = self._num_nodes * len(self._devices)
        world = hook.weft_environment_world_size()
        self._world_size = expected if world is None else int(world)
        self._global_rank = int(hook.weft_environment_global_rank() or 0)
        self._local_rank = int(hook.weft_environment_local_rank() or 0)
        self._node_rank = int(hook.weft_environment_node_rank() or 0)
        if self._external and world is not None and self._world_size != expected:
            raise ConfigurationError(
                f"The {self.environment_name} environment started {self._world_size} processes, but "
                f"Fabric(devices={len(self._devices)}, num_nodes={self._num_nodes}) describes "
                f"{expected}. Make them agree: set devices to the processes per node and num_nodes "
                "to the number of nodes (or leave devices='auto')."
            )
        if not (0 <= self._global_rank < self._world_size):
            raise ConfigurationError(f"global rank {self._global_rank} is outside the world of {self._world_size} processes")

    def _bind_hooks(self) -> None:
        """Resolve the per-step hooks once, so each step calls plugin code directly."""
        hook = self._pm.hook
        self._h_pre_backward = _resolve(hook.weft_precision_pre_backward)
        self._h_backward = _resolve(hook.weft_strategy_backward)
        self._h_precision_step = _resolve(hook.weft_precision_optimizer_step)
        self._h_strategy_step = _resolve(hook.weft_strategy_optimizer_step)

    def _forward_hooks(self) -> tuple[Any, Any, Any]:
        hook = self._pm.hook
        context = _resolve(hook.weft_precision_forward_context)
        convert_in = _resolve(hook.weft_precision_convert_input)
        convert_out = _resolve(hook.weft_precision_convert_output)
        return context, convert_in, convert_out

    def __getstate__(self) -> dict[str, Any]:
        # The plugin manager holds bound hooks; rebuild it in the new process instead of pickling it.
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_h_") and k != "_pm"}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pm = _new_plugin_manager(self._registered_plugins())
        self._bind_hooks()

    def _registered_plugins(self) -> dict[str, Any]:
        plugins = {name: getattr(self, f"_{name}") for name in ("accelerator", "environment", "precision", "strategy")}
        plugins.update({f"extra-{i}": plugin for i, plugin in enumerate(self._extras)})
        return plugins

    # ------------------------------------------------------------------ properties

    @property
    def hook(self) -> Any:
        """The pluggy hook relay: how plugins ask each other (``fabric.hook.weft_accelerator_...()``)."""
        return self._pm.hook

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The plugin manager holding this Fabric's plugins."""
        return self._pm

    @property
    def accelerator(self) -> Any:
        return self._accelerator

    @property
    def strategy(self) -> Any:
        return self._strategy

    @property
    def precision(self) -> Any:
        return self._precision

    @property
    def environment(self) -> Any:
        return self._environment

    @property
    def accelerator_name(self) -> str:
        return getattr(self._accelerator, "name", type(self._accelerator).__name__)

    @property
    def strategy_name(self) -> str:
        return getattr(self._strategy, "name", type(self._strategy).__name__)

    @property
    def precision_name(self) -> str:
        return getattr(self._precision, "name", type(self._precision).__name__)

    @property
    def environment_name(self) -> str:
        return getattr(self._environment, "name", type(self._environment).__name__)

    @property
    def precision_dtypes(self) -> Any:
        """The :class:`~weft.records.PrecisionDtypes` of the selected precision."""
        return self._pm.hook.weft_precision_dtypes()

    @property
    def devices(self) -> list[int]:
        """The local device indices, one per process on this node."""
        return list(self._devices)

    @property
    def num_devices(self) -> int:
        return len(self._devices)

    @property
    def num_nodes(self) -> int:
        return self._num_nodes

    @property
    def device(self) -> torch.device:
        """The device this process computes on."""
        if self._device is None:
            index = self._devices[self._local_rank] if self._local_rank < len(self._devices) else None
            if index is None:
                raise ConfigurationError(
                    f"local rank {self._local_rank} has no device: devices={self._devices} on this node"
                )
            self._device = self._pm.hook.weft_accelerator_get_device(index=index)
        return self._device

    @property
    def global_rank(self) -> int:
        return self._global_rank

    @property
    def local_rank(self) -> int:
        return self._local_rank

    @property
    def node_rank(self) -> int:
        return self._node_rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def is_global_zero(self) -> bool:
        return self._global_rank == 0

    # ------------------------------------------------------------------ launching

    def launch(self, function: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        """Start the job's processes if nothing else did, and set this process up.

        Without ``function`` the whole script runs in each process (the launching
        process waits for them and exits with their status). With ``function``,
        ``function(fabric, *args, **kwargs)`` runs in each process and rank 0's
        result is returned. Under ``weft run``, torchrun or ``srun`` the processes
        exist already and this only sets this one up.
        """
        if self._launched:
            raise MisuseError("fabric.launch() was already called; call it once per Fabric")
        if function is not None and not callable(function):
            raise MisuseError(f"fabric.launch() takes a function, got {type(function).__name__}")
        self._launched = True
        needs_processes = not self._external and len(self._devices) > 1
        if not self._external and self._num_nodes > 1:
            raise ConfigurationError(
                f"num_nodes={self._num_nodes} needs a process started on every node: use "
                f"`weft run --num-nodes {self._num_nodes} --node-rank N --main-address HOST ...`, "
                "torchrun or srun, or set num_nodes=1."
            )
        if needs_processes:
            worker = None if function is None else _Worker(self, function, args, kwargs)
            launched = self._pm.hook.weft_strategy_launch(fabric=self, function=worker)
            from weft.records import Launched

            if not isinstance(launched, Launched):
                raise ConfigurationError(
                    f"devices={len(self._devices)} needs {len(self._devices)} processes, but strategy "
                    f"{self.strategy_name!r} cannot start them. Use strategy='ddp' (weft-ddp), or start the "
                    "processes with `weft run` or torchrun."
                )
            return launched.result
        self._setup_environment()
        if function is not None:
            return function(self, *args, **kwargs)
        return None

    def _setup_environment(self) -> None:
        """Prepare this process: device, then the strategy (process group...). Runs once."""
        if self._environment_ready:
            return
        self._read_ranks()
        self._device = None
        hook = self._pm.hook
        hook.weft_accelerator_setup_device(device=self.device)
        hook.weft_strategy_setup_environment(fabric=self)
        self._environment_ready = True
        atexit.register(self._teardown)

    def _require_environment(self, what: str) -> None:
        if self._environment_ready:
            return
        if self._external or len(self._devices) == 1 and self._num_nodes == 1:
            self._launched = True
            self._setup_environment()
            return
        raise MisuseError(
            f"fabric.{what}() needs the processes running: call fabric.launch() first "
            f"(devices={len(self._devices)} means {len(self._devices)} processes)."
        )

    def _teardown(self) -> None:
        if not self._environment_ready:
            return
        self._environment_ready = False
        hook = self._pm.hook
        hook.weft_strategy_teardown(fabric=self)
        hook.weft_accelerator_teardown()

    # ------------------------------------------------------------------ setup

    def setup(self, module: nn.Module, *optimizers: torch.optim.Optimizer, move_to_device: bool = True) -> Any:
        """Set up a model and its optimizers: returns ``model`` or ``(model, *optimizers)``."""
        self._require_environment("setup")
        _check_module(module, "setup")
        for optimizer in optimizers:
            _check_optimizer(optimizer)
        original = module
        module = self._pm.hook.weft_precision_convert_module(module=module) or module
        if optimizers:
            result = self._pm.hook.weft_strategy_setup_module_and_optimizers(
                fabric=self, module=module, optimizers=list(optimizers)
            )
            if result is None:
                forward_module = self._setup_raw_module(module, move_to_device)
                raw_optimizers = [self._setup_raw_optimizer(o) for o in optimizers]
            else:
                forward_module, raw_optimizers = result
        else:
            forward_module = self._setup_raw_module(module, move_to_device)
            raw_optimizers = []
        wrapped = _FabricModule(forward_module, original, self)
        self._modules_set_up += 1
        if not optimizers:
            return wrapped
        return (wrapped, *[self._wrap_optimizer(o) for o in raw_optimizers])

    def setup_module(self, module: nn.Module, move_to_device: bool = True) -> nn.Module:
        """Set up a model alone (set up its optimizers afterwards with :meth:`setup_optimizers`)."""
        return self.setup(module, move_to_device=move_to_device)

    def setup_optimizers(self, *optimizers: torch.optim.Optimizer) -> Any:
        """Set up optimizers whose model was set up already; returns one or a tuple."""
        self._require_environment("setup_optimizers")
        if not optimizers:
            raise MisuseError("setup_optimizers() needs at least one optimizer")
        for optimizer in optimizers:
            _check_optimizer(optimizer)
        wrapped = [self._wrap_optimizer(self._setup_raw_optimizer(o)) for o in optimizers]
        return wrapped[0] if len(wrapped) == 1 else tuple(wrapped)

    def _setup_raw_module(self, module: nn.Module, move_to_device: bool) -> nn.Module:
        if not move_to_device:
            return module
        out = self._pm.hook.weft_strategy_setup_module(fabric=self, module=module)
        return module.to(self.device) if out is None else out

    def _setup_raw_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        out = self._pm.hook.weft_strategy_setup_optimizer(fabric=self, optimizer=optimizer)
        return optimizer if out is None else out

    def _wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> _FabricOptimizer:
        precision_step, strategy_step = self._h_precision_step, self._h_strategy_step
        if precision_step is None and strategy_step is None:
            step = optimizer.step  # nothing to add: the user's step, called directly
        else:

            def step(closure: Callable[[], Any] | None = None) -> Any:
                if strategy_step is None:
                    inner = (lambda: optimizer.step(closure)) if closure is not None else optimizer.step
                else:

                    def inner() -> Any:
                        if closure is not None:
                            with torch.enable_grad():
                                closure()
                        return strategy_step(fabric=self, optimizer=optimizer)

                if precision_step is None:
                    return inner()
                return precision_step(optimizer=optimizer, step=inner)

        return _FabricOptimizer(optimizer, step)

    def setup_dataloaders(
        self, *dataloaders: Any, use_distributed_sampler: bool = True, move_to_device: bool = True
    ) -> Any:
        """Set up data loaders: a distributed sampler when the strategy asks, batches moved to the device."""
        self._require_environment("setup_dataloaders")
        if not dataloaders:
            raise MisuseError("setup_dataloaders() needs at least one DataLoader")
        sampler_kwargs = self._pm.hook.weft_strategy_distributed_sampler_kwargs(fabric=self)
        device = self.device if move_to_device and self.device.type != "cpu" else None
        out = []
        for loader in dataloaders:
            if not isinstance(loader, torch.utils.data.DataLoader):
                raise MisuseError(f"setup_dataloaders() takes torch.utils.data.DataLoader objects, got {type(loader).__name__}")
            if isinstance(loader, _FabricDataLoader):
                raise MisuseError("this DataLoader was already set up by fabric.setup_dataloaders()")
            if sampler_kwargs and use_distributed_sampler:
                from weft.utilities.data import with_distributed_sampler

                loader = with_distributed_sampler(loader, sampler_kwargs)
            out.append(_FabricDataLoader(loader, device))
        return out[0] if len(out) == 1 else tuple(out)

    # ------------------------------------------------------------------ training step

    def backward(self, tensor: torch.Tensor, *args: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        """Replace ``loss.backward()``: lets the precision scale the loss and the strategy run backward."""
        if not self._modules_set_up:
            raise MisuseError(
                "fabric.backward() was called before any model was set up: pass the model through "
                "fabric.setup(model, optimizer) first, and compute the loss with the returned model."
            )
        if self._h_pre_backward is not None:
            tensor = self._h_pre_backward(tensor=tensor)
        if self._h_backward is not None:
            self._h_backward(fabric=self, tensor=tensor, module=model)
        else:
            tensor.backward(*args, **kwargs)

    def clip_gradients(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        clip_val: float | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        error_if_nonfinite: bool = False,
    ) -> torch.Tensor | None:
        """Clip by value (``clip_val``) or by total norm (``max_norm``), after unscaling; returns the norm."""
        if (clip_val is None) == (max_norm is None):
            raise ConfigurationError("clip_gradients() takes exactly one of clip_val= or max_norm=")
        if not isinstance(module, _FabricModule):
            raise MisuseError("clip_gradients() takes the model returned by fabric.setup()")
        raw_optimizer = unwrap(optimizer)
        hook = self._pm.hook
        hook.weft_precision_unscale_gradients(optimizer=raw_optimizer)
        forward_module = module._forward_module
        if max_norm is not None:
            norm = hook.weft_strategy_clip_gradients_norm(
                fabric=self, module=forward_module, optimizer=raw_optimizer, max_norm=float(max_norm), norm_type=float(norm_type)
            )
            if norm is None:
                raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_clip_gradients_norm")
            if error_if_nonfinite and not torch.isfinite(norm):
                raise RuntimeError(f"The total gradient norm is {norm.item()}; clipping is meaningless")
            return norm
        done = hook.weft_strategy_clip_gradients_value(
            fabric=self, module=forward_module, optimizer=raw_optimizer, clip_val=float(clip_val)
        )
        if done is None:
            raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_clip_gradients_value")
        return None

    def no_backward_sync(self, module: nn.Module, enabled: bool = True) -> ContextManager[None]:
        """Skip gradient synchronisation in backward while ``enabled`` (gradient accumulation)."""
        if not isinstance(module, _FabricModule):
            raise MisuseError("no_backward_sync() takes the model returned by fabric.setup()")
        context = self._pm.hook.weft_strategy_no_backward_sync(
            fabric=self, module=module._forward_module, enabled=bool(enabled)
        )
        return contextlib.nullcontext() if context is None else context

    def autocast(self) -> ContextManager[None]:
        """The precision's forward context (autocast), for computation outside the model's forward."""
        context = self._pm.hook.weft_precision_forward_context()
        return contextlib.nullcontext() if context is None else context

    # ------------------------------------------------------------------ devices and init

    def to_device(self, obj: Any) -> Any:
        """Move a module, a tensor or a nested collection of tensors to this process's device."""
        if isinstance(obj, nn.Module):
            return obj.to(self.device)
        return move_to_device(obj, self.device)

    @contextlib.contextmanager
    def init_module(self, empty_init: bool | None = None) -> Iterator[None]:
        """Create a model directly on the device, in the precision's dtype; ``empty_init=True`` skips
        weight initialisation (and with sharding strategies, builds on the meta device)."""
        self._require_environment("init_module")
        hook = self._pm.hook
        with contextlib.ExitStack() as stack:
            context = hook.weft_strategy_module_init_context(fabric=self, empty_init=empty_init)
            stack.enter_context(self.device if context is None else context)
            precision_context = hook.weft_precision_module_init_context()
            if precision_context is not None:
                stack.enter_context(precision_context)
            yield

    @contextlib.contextmanager
    def init_tensor(self) -> Iterator[None]:
        """Create tensors on the device, in the precision's dtype."""
        self._require_environment("init_tensor")
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.device)
            precision_context = self._pm.hook.weft_precision_module_init_context()
            if precision_context is not None:
                stack.enter_context(precision_context)
            yield

    # ------------------------------------------------------------------ collectives

    def all_reduce(self, data: Any, group: Any = None, reduce_op: str = "mean") -> Any:
        """Reduce tensors (or numbers, or collections of them) across processes."""
        if reduce_op not in _REDUCE_OPS:
            raise ConfigurationError(f"reduce_op={reduce_op!r} is not one of {', '.join(_REDUCE_OPS)}")
        self._require_environment("all_reduce")
        reduce = self._collective("all_reduce")

        def one(tensor: torch.Tensor) -> torch.Tensor:
            return reduce(fabric=self, tensor=tensor.to(self.device), reduce_op=reduce_op)

        return apply_to_tensors(_as_tensors(data, self.device), one)

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Gather tensors from every process; each result has a new first dimension of size world_size."""
        self._require_environment("all_gather")
        gather = self._collective("all_gather")
        return apply_to_tensors(
            _as_tensors(data, self.device),
            lambda t: gather(fabric=self, tensor=t.to(self.device).contiguous(), sync_grads=bool(sync_grads)),
        )

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Send a picklable object from rank ``src`` to every process."""
        if not isinstance(src, int) or not (0 <= src < self._world_size):
            raise ConfigurationError(f"broadcast(src={src!r}) must name a rank in 0..{self._world_size - 1}")
        self._require_environment("broadcast")
        return self._collective("broadcast")(fabric=self, obj=obj, src=src)[0]

    def barrier(self, name: str | None = None) -> None:
        """Wait for every process (with a bounded timeout)."""
        self._require_environment("barrier")
        self._collective("barrier")(fabric=self, name=name)

    def _collective(self, name: str) -> Callable[..., Any]:
        caller = getattr(self._pm.hook, f"weft_strategy_{name}")
        target = _resolve(caller)
        if target is None:
            raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_{name}")
        return target

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike, state: dict[str, Any], filter: dict[str, Callable] | None = None) -> None:
        """Save models, optimizers and any other state to ``path`` (atomically).

        Single-file strategies write from rank 0 alone, so ``if fabric.is_global_zero:
        fabric.save(...)`` works; sharded strategies need every rank to call it.
        """
        if not isinstance(state, dict):
            raise MisuseError(f"save() takes a dict of state, got {type(state).__name__}")
        self._require_environment("save")
        raw = {k: unwrap(v) for k, v in state.items()}
        for key, value in raw.items():
            if isinstance(value, RNGState):
                raw[key] = value.gather(self)  # a collective: every rank's generators go to the writer
        precision_state = self._pm.hook.weft_precision_state_dict()
        if precision_state:
            raw[PRECISION_KEY] = precision_state
        done = self._pm.hook.weft_strategy_save_checkpoint(fabric=self, path=os.fspath(path), state=raw, filter=filter)
        if done is None:
            raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_save_checkpoint")

    def load(
        self, path: str | os.PathLike, state: dict[str, Any] | None = None, strict: bool = True, weights_only: bool = True
    ) -> dict[str, Any]:
        """Restore ``state`` in place from ``path``; returns the checkpoint's entries not in ``state``.

        Loading uses ``torch.load(weights_only=True)`` unless ``weights_only=False``
        is passed for a checkpoint you trust.
        """
        if state is not None and not isinstance(state, dict):
            raise MisuseError(f"load() takes a dict of state (or None), got {type(state).__name__}")
        self._require_environment("load")
        raw = None if state is None else {k: unwrap(v) for k, v in state.items()}
        for value in (raw or {}).values():
            if isinstance(value, RNGState):
                value._bind(self)  # so it restores this rank's generators
        remainder = self._pm.hook.weft_strategy_load_checkpoint(
            fabric=self, path=os.fspath(path), state=raw, strict=strict, weights_only=weights_only
        )
        if remainder is None:
            raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_load_checkpoint")
        if state is not None:
            for key, value in raw.items():
                if unwrap(state[key]) is not value or not hasattr(value, "load_state_dict"):
                    state[key] = value  # plain values were replaced by the checkpoint's
            if PRECISION_KEY in remainder:
                self._pm.hook.weft_precision_load_state_dict(state=remainder.pop(PRECISION_KEY))
        return remainder

    def load_raw(self, path: str | os.PathLike, obj: nn.Module | torch.optim.Optimizer, strict: bool = True, weights_only: bool = True) -> None:
        """Load a plain ``state_dict`` file (e.g. ``torch.save(model.state_dict(), path)``) into ``obj``."""
        self._require_environment("load_raw")
        self._pm.hook.weft_strategy_load_checkpoint(
            fabric=self, path=os.fspath(path), state=unwrap(obj), strict=strict, weights_only=weights_only
        )

    # ------------------------------------------------------------------ conveniences

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank 0 only."""
        if self._global_rank == 0:
            print(*args, **kwargs)

    @staticmethod
    def seed_everything(seed: int | None = None, workers: bool = False) -> int:
        """Seed Python, NumPy (if installed) and torch; see :func:`weft.seed_everything`."""
        from weft.utilities.seed import seed_everything

        return seed_everything(seed, workers)

    @contextlib.contextmanager
    def rank_zero_first(self, local: bool = False) -> Iterator[None]:
        """Let rank 0 (of the node with ``local=True``) run the block before the others (e.g. downloads)."""
        first = (self._local_rank if local else self._global_rank) == 0
        if not first:
            self.barrier("rank_zero_first")
        yield
        if first:
            self.barrier("rank_zero_first")

    def __repr__(self) -> str:
        return (
            f"Fabric(accelerator={self.accelerator_name!r}, strategy={self.strategy_name!r}, "
            f"devices={len(self._devices)}, num_nodes={self._num_nodes}, precision={self.precision_name!r})"
        )


class _Worker:
    """What a launcher runs in each new process: set the process up, then the user's function."""

    def __init__(self, fabric: Fabric, function: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.fabric, self.function, self.args, self.kwargs = fabric, function, args, kwargs

    def __call__(self) -> Any:
        fabric = self.fabric
        fabric._external = True
        fabric._setup_environment()
        try:
            return self.function(fabric, *self.args, **self.kwargs)
        finally:
            fabric._teardown()


# ---------------------------------------------------------------------- argument checks


def _apply_cli_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """Take `weft run`'s flags as defaults; a conflicting explicit argument is an error."""
    out = dict(given)
    for arg, env in CLI_ENV.items():
        cli = os.environ.get(env)
        if cli is None:
            continue
        value = given[arg]
        if isinstance(value, (_Default, _DefaultInt)):
            out[arg] = int(cli) if arg == "num_nodes" else cli
            continue
        shown = getattr(value, "name", value)
        if str(shown) != cli:
            raise ConfigurationError(
                f"`weft run --{arg.replace('_', '-')} {cli}` conflicts with Fabric({arg}={value!r}) in the "
                f"script. Remove one of them (the command line only fills arguments the script leaves unset)."
            )
    return out


def _check_types(accelerator: Any, strategy: Any, devices: Any, num_nodes: Any, precision: Any, plugins: Any) -> None:
    for name, value in (("accelerator", accelerator), ("strategy", strategy)):
        if not isinstance(value, str) and not _plugin_kinds(value):
            raise ConfigurationError(f"{name}={value!r}: pass a name (str) or a weft {name} plugin object")
    if isinstance(precision, bool) or not isinstance(precision, (str, int)) and not _plugin_kinds(precision):
        raise ConfigurationError(f"precision={precision!r}: pass a name such as '32-true' or 'bf16-mixed', or a precision plugin")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigurationError(f"num_nodes={num_nodes!r} must be a positive int")
    if isinstance(devices, (bool, float)) or not isinstance(devices, (int, str, list, tuple)):
        raise ConfigurationError(f"devices={devices!r}: pass an int, -1 for all, 'auto', a list of indices or '0,2'")
    if plugins is not None and not isinstance(plugins, (list, tuple)) and not _plugin_kinds(plugins):
        raise ConfigurationError(f"plugins={plugins!r}: pass a plugin object or a list of them")


def _check_module(module: Any, what: str) -> None:
    if isinstance(module, _FabricModule):
        raise MisuseError(f"{what}(): this model was already set up by fabric.setup()")
    if not isinstance(module, nn.Module):
        raise MisuseError(f"{what}() takes a torch.nn.Module first, got {type(module).__name__}")


def _check_optimizer(optimizer: Any) -> None:
    if isinstance(optimizer, _FabricOptimizer):
        raise MisuseError("this optimizer was already set up by fabric.setup()")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise MisuseError(f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}")


def _as_tensors(data: Any, device: torch.device) -> Any:
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return torch.tensor(data, device=device)
    return data


# ---------------------------------------------------------------------- plugin selection


def _plugin_or_create(kind: str, value: Any) -> Any:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        from weft.compat import incompatibility

        problem = incompatibility(registry.find(kind, str(value)))
        if problem:
            raise ConfigurationError(f"{kind[:-1] if kind != 'strategies' else 'strategy'} {str(value)!r}: {problem}")
        return registry.create(kind, str(value))
    return value


def _hooks_of(plugin: Any) -> Any:
    """The hooks of one plugin alone, to ask it something before the Fabric's manager exists."""
    return _new_plugin_manager({"plugin": plugin}).hook


def _pick_accelerator(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value != "auto":
        plugin = registry.create("accelerators", value)
        if not _hooks_of(plugin).weft_accelerator_is_available():
            available = [n for n in registry.names("accelerators") if _available(n)]
            raise ConfigurationError(
                f"accelerator={value!r} is not available on this machine. Available: {', '.join(available)}."
            )
        return plugin
    best, best_priority = None, None
    for name in registry.names("accelerators"):
        try:
            plugin = registry.create("accelerators", name)
        except Exception:  # noqa: BLE001 - a broken optional accelerator must not break 'auto'
            continue
        hooks = _hooks_of(plugin)
        if not hooks.weft_accelerator_is_available():
            continue
        priority = hooks.weft_accelerator_auto_priority() or 0
        if best_priority is None or priority > best_priority:
            best, best_priority = plugin, priority
    if best is None:
        raise ConfigurationError("accelerator='auto' found no available accelerator")
    return best


def _available(name: str) -> bool:
    try:
        plugin = registry.create("accelerators", name)
    except Exception:  # noqa: BLE001
        return False
    return bool(_hooks_of(plugin).weft_accelerator_is_available())


def _detect_environment() -> Any:
    best, best_score = None, None
    for name in registry.names("environments"):
        plugin = registry.create("environments", name)
        score = _hooks_of(plugin).weft_environment_detect()
        if score is not None and (best_score is None or score > best_score):
            best, best_score = plugin, score
    if best is None:
        raise ConfigurationError("no cluster environment matched this process (is weft installed correctly?)")
    return best
