"""``Fabric``: the one object a training script talks to.

``Fabric(strategy="fsdp")`` asks the registry for the plugins named, registers
them with a pluggy plugin manager and from then on reaches them only through
the hooks in :mod:`weft.hookspecs`.

Its helpers live in modules of their own: choosing the plugins (:mod:`weft.selection`), the
launchers' flags as defaults (:mod:`weft.cli_defaults`), argument checks
(:mod:`weft.argument_checks`), checkpoint paths (:mod:`weft.checkpoint_paths`) and what the
collectives accept (:mod:`weft.collective_inputs`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import Any, Callable, ContextManager, Iterator, Mapping

import pluggy
import torch
from torch import nn

from weft import callbacks as callback_calls
from weft import contract, hookspecs, registry
from weft.argument_checks import (
    _backward_problem,
    _check_callbacks,
    _check_clip_value,
    _check_group,
    _check_launch_function,
    _check_module,
    _check_optimizer,
    _check_save_filter,
    _check_types,
)
from weft.checkpoint import PRECISION_KEY, STRATEGY_KEY, check_restorable
from weft.checkpoint_paths import _check_not_empty, _check_path, _write_error
from weft.cli_defaults import (  # CLI_ENV, CLI_STRATEGY_OPTIONS: also importable from here, as before
    CLI_ENV,
    CLI_STRATEGY_OPTIONS,
    _apply_cli_defaults,
    _cli_strategy_options,
    _Default,
    _DefaultInt,
    _lightning_cli_used,
    _naming_cli_sources,
)
from weft.clipping import check_finite_norm
from weft.collective_inputs import _numbers_to_tensors, _reduce_op_name
from weft.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    ConfigurationError,
    ConfigurationTypeError,
    LogDictTypeError,
    MisuseError,
    MisuseTypeError,
    MisuseValueError,
    NoLoggerError,
    OptimizerTypeError,
    WeftError,
)
from weft.selection import (
    _detect_environment,
    _launching_strategies_hint,
    _new_plugin_manager,
    _pick_accelerator,
    _plugin_or_create,
    _sort_plugins,
)
from weft.utilities.apply import apply_to_tensors, move_to_device
from weft.utilities.rng import RNGState
from weft.wrappers import (
    _call_hooks,
    _check_placed,
    _FabricDataLoader,
    _FabricModule,
    _FabricOptimizer,
    _only_closure,
    unwrap,
    unwrap_compiled,
)

_LOGGER_HOOKS = tuple(name for name in vars(hookspecs) if name.startswith("weft_logger_"))


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
    :param callbacks: an object or a list of objects whose methods :meth:`call` calls by name.
    :param loggers: a logger name (``"csv"``), a logger object, or a list of them; see
        :meth:`log`. Objects with Lightning's logger interface are accepted as they are.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``callbacks`` and ``loggers``.
    """

    def __init__(
        self,
        accelerator: str | Any = _Default("auto"),
        strategy: str | Any = _Default("auto"),
        devices: int | str | list[int] = _Default("auto"),
        num_nodes: int = _DefaultInt(1),
        precision: str | int | Any = _Default("32-true"),
        plugins: Any = None,
        callbacks: Any = None,
        loggers: Any = None,
    ) -> None:
        if precision is None:  # as in Lightning: None means the default
            precision = _Default("32-true")
        given, cli_sources = _apply_cli_defaults(
            {"accelerator": accelerator, "strategy": strategy, "devices": devices, "num_nodes": num_nodes, "precision": precision}
        )
        accelerator, strategy, devices, num_nodes, precision = (given[k] for k in ("accelerator", "strategy", "devices", "num_nodes", "precision"))
        # An error about a value the launcher supplied names the variable it came from.
        with _naming_cli_sources(cli_sources):
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
            options = _cli_strategy_options(strategy)  # `weft run --strategy-option KEY=VALUE`
            if isinstance(strategy, str) and strategy == "auto":
                from weft import strategy_choice

                # The installed strategy whose declared capabilities suit the world size.
                strategy, created = strategy_choice.choose(self._world_size)
                if created is not None and not options:
                    strategy = created
            self._strategy = _plugin_or_create("strategies", strategy, options)
            contract.register(self._pm, self._strategy, "strategy", "strategy")
            for index, plugin in enumerate(others):
                contract.register(self._pm, plugin, f"extra-{index}")
            self._extras = others
            _check_callbacks(callbacks)
            self._callbacks = callback_calls.configure(callbacks)
            self._configure_loggers(loggers)

        self._device: torch.device | None = None
        self._environment_ready = False
        self._launched = False
        self._modules_set_up = 0
        self._loaders_set_up = 0  # numbers each loader alike on every rank (see EpochStartExchange)
        self._bind_hooks()
        hook.weft_validate(fabric=self)
        if _lightning_cli_used() and self._external:
            # As Lightning Fabric under `fabric run`: the processes exist, so the process group is
            # set up now and the script may use torch.distributed right away (it calls no launch()).
            self._launched = True
            self._setup_environment()

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
        self._h_loggers = None  # resolved only where some plugin implements a logger hook
        if any(getattr(hook, name).get_hookimpls() for name in _LOGGER_HOOKS):
            from weft.loggers.dispatch import LoggerCalls

            self._h_loggers = LoggerCalls(self._pm)

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
        plugins.update({f"logger-{i}": plugin for i, plugin in enumerate(self._logger_plugins)})
        return plugins

    def _configure_loggers(self, loggers: Any) -> None:
        """Create named loggers, register each (or its adapter) with the plugin manager."""
        given = [] if loggers is None else list(loggers) if isinstance(loggers, (list, tuple)) else [loggers]
        self._loggers = [_plugin_or_create("loggers", item) if isinstance(item, str) else item for item in given]
        self._logger_plugins: list[Any] = []
        self._loggers_finalized = False
        self._loggers_used = False
        self._supervising = False
        if not self._loggers:
            return
        from weft.loggers.dispatch import as_plugin

        for index, logger in enumerate(self._loggers):
            if isinstance(logger, type):
                raise ConfigurationTypeError(
                    f"loggers= holds the class {logger.__name__}, not a logger: pass an instance, e.g. "
                    f"{logger.__name__}(...), or a logger name such as 'csv'"
                )
            if any(logger is earlier for earlier in self._loggers[:index]):
                raise ConfigurationError(f"loggers= holds the same logger twice ({type(logger).__name__}); pass it once")
            plugin = as_plugin(logger, lambda: registry.names("loggers"))
            contract.register(self._pm, plugin, f"logger-{index}", "logger")
            self._logger_plugins.append(plugin)
        atexit.register(self._finalize_at_exit)

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
            device = self._pm.hook.weft_accelerator_get_device(index=index)
            if device is None:  # a required hook: None ("not handled") has no fallback
                raise ConfigurationError(
                    f"accelerator {self.accelerator_name!r}: weft_accelerator_get_device(index={index}) returned None; "
                    "it must return the torch.device this process computes on"
                )
            self._device = device
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

    @property
    def loggers(self) -> list[Any]:
        """The loggers given to ``Fabric(loggers=...)``, as given (a name as the logger it created)."""
        return self._loggers

    @property
    def logger(self) -> Any:
        """The first of :attr:`loggers`, the main one."""
        if not self._loggers:
            raise NoLoggerError("fabric.logger: this Fabric has no logger; pass one with Fabric(loggers=...), e.g. loggers='csv'")
        return self._loggers[0]

    # ------------------------------------------------------------------ launching

    def launch(self, function: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        """Start the job's processes if nothing else did, and set this process up.

        Without ``function`` the whole script runs in each process (the launching
        process waits for them and exits with their status). With ``function``,
        ``function(fabric, *args, **kwargs)`` runs in each process and rank 0's
        result is returned. Under ``weft run``, torchrun or ``srun`` the processes
        exist already and this only sets this one up.

        As in Lightning Fabric: calling it again without a function does nothing; a
        script started by Lightning's ``fabric run`` must not call it (the processes
        exist and are set up by ``Fabric(...)``), and it raises there.
        """
        if _lightning_cli_used():
            raise MisuseError(
                "This script was started by Lightning's `fabric run`, which created the processes and set them up "
                "in Fabric(...): remove fabric.launch() (Lightning Fabric refuses it there too), or start the "
                "script with `weft run` or plain python."
            )
        if function is not None:
            _check_launch_function(function)
        elif self._launched:
            return None
        needs_processes = not self._external and len(self._devices) > 1
        if not self._external and self._num_nodes > 1:
            raise ConfigurationError(
                f"num_nodes={self._num_nodes} needs a process started on every node: use "
                f"`weft run --num-nodes {self._num_nodes} --node-rank N --main-address HOST ...`, "
                "torchrun or srun, or set num_nodes=1."
            )
        if needs_processes:
            # This process only supervises the workers: loggers it never used are not finalized here.
            self._supervising = True
            worker = None if function is None else _Worker(self, function, args, kwargs)
            launched = self._pm.hook.weft_strategy_launch(fabric=self, function=worker)
            from weft.records import Launched

            if not isinstance(launched, Launched):
                raise ConfigurationError(
                    f"devices={len(self._devices)} needs {len(self._devices)} processes, but strategy "
                    f"{self.strategy_name!r} cannot start them. {_launching_strategies_hint()}, or start the "
                    "processes with `weft run` or torchrun."
                )
            self._launched = True
            return launched.result
        self._launched = True
        self._setup_environment()
        if function is not None:
            return function(self, *args, **kwargs)
        return None

    def _setup_environment(self) -> None:
        """Prepare this process: device, then every plugin's ``weft_setup_process``, then the
        strategy (process group...). Runs once, in each process that trains."""
        if self._environment_ready:
            return
        self._read_ranks()
        if self._external:
            from weft import launch, lifecycle

            launch.check_strategy_runs(self, self._world_size, f"the {self.environment_name} environment started {self._world_size} processes")
            if lifecycle.has_launcher_agent():  # torchrun's agent: end with it, never as an orphan
                lifecycle.watch_launcher(rank=self._global_rank)
        self._device = None
        hook = self._pm.hook
        hook.weft_accelerator_setup_device(device=self.device)
        # Every plugin's per-process setup: the device is known, the process group not yet
        # created, so settings it depends on (variables, backend flags) take effect.
        hook.weft_setup_process(fabric=self)
        hook.weft_strategy_setup_environment(fabric=self)
        self._environment_ready = True
        atexit.register(self._teardown)
        if self._h_loggers is not None and self._external and self._global_rank == 0:
            # A launcher stops the other workers with SIGTERM when one fails: write the logs first.
            from weft.loggers.dispatch import finalize_on_sigterm

            finalize_on_sigterm(lambda: self._finalize_loggers("failed"))

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
        self._finalize_loggers(_exit_status())
        self._environment_ready = False
        hook = self._pm.hook
        hook.weft_strategy_teardown(fabric=self)
        hook.weft_accelerator_teardown()

    def _finalize_loggers(self, status: str) -> None:
        """``finalize(status)`` on every logger, once per process, on global rank 0."""
        if self._loggers_finalized or self._h_loggers is None:
            return
        self._loggers_finalized = True
        if self._global_rank == 0:
            self._h_loggers.call("weft_logger_finalize", status=status)

    def _finalize_at_exit(self) -> None:
        # A process that only started the workers did no logging: finalizing there could create
        # files (a new version folder) for nothing.
        if self._supervising and not self._loggers_used:
            return
        self._finalize_loggers(_exit_status())

    # ------------------------------------------------------------------ setup

    def setup(self, module: nn.Module, *optimizers: torch.optim.Optimizer, move_to_device: bool = True) -> Any:
        """Set up a model and its optimizers: returns ``model`` or ``(model, *optimizers)``.

        A ``torch.compile``d model is set up uncompiled (the strategy wraps the user's module),
        then what the strategy made of it is compiled the same way; its ``state_dict`` keys
        are the uncompiled model's, so checkpoints load into compiled and plain models alike.

        A Lightning ``LightningModule`` is attached to this Fabric (``self.log``, ``self.logger``,
        ``self.fabric``, ``self.optimizers()`` work in it) and added to the callbacks. Then the
        callbacks' ``on_after_setup(fabric=..., module=...)`` runs.
        """
        return self._setup(module, *optimizers, move_to_device=move_to_device, notify=True)

    def _setup(self, module: nn.Module, *optimizers: torch.optim.Optimizer, move_to_device: bool, notify: bool) -> Any:
        self._require_environment("setup")
        _check_module(module, "setup")
        for optimizer in optimizers:
            _check_optimizer(optimizer)
        module, compile_like = unwrap_compiled(module)
        if compile_like is not None:
            _check_module(module, "setup")  # torch.compile(model) of a model set up already
        original = module
        converted = self._pm.hook.weft_precision_convert_module(module=module)
        module = module if converted is None else converted  # None: not converted (an empty Sequential is falsy)
        call_hooks = _call_hooks(module)
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
        wrapped = _FabricModule(
            forward_module,
            original,
            self,
            compiled=None if compile_like is None else compile_like(forward_module),
            # The strategy changed how the module is called (a wrapper such as DDP, or hooks on
            # the module itself such as FSDP2's): other methods must go through it too.
            routed=forward_module is not original or compile_like is not None or _call_hooks(forward_module) != call_hooks,
            device=self.device if move_to_device else None,
        )
        self._modules_set_up += 1
        # Attach first: the optimizers' step calls callbacks, the LightningModule among them.
        self._attach_lightning_module(original)
        fabric_optimizers = [self._wrap_optimizer(o) for o in raw_optimizers]
        if _is_lightning_module(original):
            original._fabric_optimizers = fabric_optimizers
        if notify:
            self.call("on_after_setup", fabric=self, module=wrapped)
        if not optimizers:
            return wrapped
        return (wrapped, *fabric_optimizers)

    def setup_module(self, module: nn.Module, move_to_device: bool = True) -> nn.Module:
        """Set up a model alone (set up its optimizers afterwards with :meth:`setup_optimizers`).

        Unlike :meth:`setup`, calls no ``on_after_setup`` callback, as in Lightning Fabric.
        """
        return self._setup(module, move_to_device=move_to_device, notify=False)

    def _attach_lightning_module(self, module: nn.Module) -> None:
        """Let a LightningModule's ``self.log``, ``self.logger``, ``self.fabric`` and ``self.optimizers()``
        reach this Fabric, and make it a callback, as Lightning Fabric does."""
        if not _is_lightning_module(module):
            return
        module._fabric = self
        if not any(module is callback for callback in self._callbacks):
            self._callbacks.append(module)

    def setup_optimizers(self, *optimizers: torch.optim.Optimizer) -> Any:
        """Set up optimizers whose model was set up already; returns one or a tuple."""
        self._require_environment("setup_optimizers")
        if not optimizers:
            raise MisuseValueError("setup_optimizers() needs at least one optimizer")  # Lightning: ValueError
        for optimizer in optimizers:
            _check_optimizer(optimizer)
        wrapped = [self._wrap_optimizer(self._setup_raw_optimizer(o)) for o in optimizers]
        return wrapped[0] if len(wrapped) == 1 else tuple(wrapped)

    def _setup_raw_module(self, module: nn.Module, move_to_device: bool) -> nn.Module:
        if not move_to_device:
            if self._world_size == 1:
                return module  # one process: nothing to synchronise, and the model stays where it is
            # Several processes: the strategy must still wrap the model (without DDP the replicas
            # would drift apart), and it places the model on this process's device.
            _check_placed(module, self.device)
        out = self._pm.hook.weft_strategy_setup_module(fabric=self, module=module)
        return module.to(self.device) if out is None else out

    def _setup_raw_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        out = self._pm.hook.weft_strategy_setup_optimizer(fabric=self, optimizer=optimizer)
        return optimizer if out is None else out

    def _wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> _FabricOptimizer:
        step = self._step_function(optimizer)
        if self._callbacks:
            # As Lightning Fabric: each step ends with the callbacks' on_after_optimizer_step. Only
            # where there are callbacks, so a step without them stays the plain call. (The list is
            # read at each step: a LightningModule set up later joins it.)
            inner_step, callbacks = step, self._callbacks

            def step(*args: Any, **kwargs: Any) -> Any:
                out = inner_step(*args, **kwargs)
                callback_calls.call(
                    callbacks, "on_after_optimizer_step", (), {"strategy": self._strategy, "optimizer": optimizer}, warn=False
                )
                return out

        return _FabricOptimizer(optimizer, step)

    def _step_function(self, optimizer: torch.optim.Optimizer) -> Callable[..., Any]:
        """What the set-up optimizer's ``step`` runs: the precision's and strategy's step around the user's."""
        precision_step, strategy_step = self._h_precision_step, self._h_strategy_step
        if precision_step is None and strategy_step is None:
            # Nothing to add: the user's step, called directly with whatever arguments it takes.
            return optimizer.step

        def step(*args: Any, **kwargs: Any) -> Any:
            closure = kwargs.get("closure", args[0] if args else None)
            closure = closure if callable(closure) else None
            if closure is not None and precision_step is not None:
                # The precision inspects the gradients (a scaler unscales them) before `inner`
                # runs; a closure would compute new ones after that, and they would be used as is.
                raise MisuseError(
                    f"optimizer.step(closure) cannot run under precision {self.precision_name!r}: it checks and "
                    "unscales the gradients before the step, and the closure would compute new ones after that. "
                    "Run the closure's work yourself (forward, fabric.backward) and call optimizer.step() without it."
                )
            if strategy_step is None:
                inner = (lambda: optimizer.step(*args, **kwargs)) if args or kwargs else optimizer.step
            else:
                _only_closure(args, kwargs, self.strategy_name, optimizer)

                def inner() -> Any:
                    if closure is not None:
                        with torch.enable_grad():
                            closure()
                    return strategy_step(fabric=self, optimizer=optimizer)

            if precision_step is None:
                return inner()
            return precision_step(optimizer=optimizer, step=inner)

        return step

    def setup_dataloaders(
        self, *dataloaders: Any, use_distributed_sampler: bool = True, move_to_device: bool = True
    ) -> Any:
        """Set up data loaders: each rank's share of the data when the strategy asks, batches moved to the device.

        With ``use_distributed_sampler`` under a strategy that splits data (DDP, FSDP), each loader
        is rebuilt through its own class around this rank's sampler (see
        :func:`weft.utilities.data.with_distributed_sampler`). After ``seed_everything(workers=True)``
        loaders without a ``worker_init_fn`` get one seeding each worker. Returns one loader, or a
        list of them in the order given.
        """
        self._require_environment("setup_dataloaders")
        from weft.errors import DataLoaderSetupError, MisuseValueError
        from weft.utilities import data

        if not dataloaders:
            raise MisuseValueError("setup_dataloaders() needs at least one DataLoader")

        sampler_kwargs = self._pm.hook.weft_strategy_distributed_sampler_kwargs(fabric=self)
        device = self.device if move_to_device and self.device.type != "cpu" else None
        for loader in dataloaders:
            if not isinstance(loader, torch.utils.data.DataLoader):
                hint = (
                    ": wrap the dataset in one, e.g. DataLoader(dataset, batch_size=...)"
                    if isinstance(loader, torch.utils.data.Dataset) else ""
                )
                raise DataLoaderSetupError(
                    f"setup_dataloaders() takes torch.utils.data.DataLoader objects, got {type(loader).__name__}{hint}"
                )
            if isinstance(loader, _FabricDataLoader):
                raise MisuseValueError("this DataLoader was already set up by fabric.setup_dataloaders(); pass each loader once")
        out = []
        for loader in dataloaders:
            if sampler_kwargs and use_distributed_sampler:
                # A new loader (of the user's class) around this rank's share of the data.
                loader = data.with_distributed_sampler(loader, sampler_kwargs)
            data.add_worker_seeding(loader, self._global_rank)
            # Several ranks: each leaves its epoch-start generator states where the checkpoint's writer reads them.
            exchange = data.epoch_start_exchange(self._loaders_set_up, self._global_rank, self._world_size)
            self._loaders_set_up += 1
            out.append(_FabricDataLoader(loader, device, self._global_rank, self._world_size, exchange))
        return out[0] if len(out) == 1 else out  # a list, as Lightning returns

    # ------------------------------------------------------------------ training step

    def backward(self, tensor: torch.Tensor, *args: Any, model: nn.Module | None = None, **kwargs: Any) -> None:
        """Replace ``loss.backward()``: lets the precision scale the loss and the strategy run backward.

        Needs no model set up on this Fabric (the loss may come from models set up on another), as
        in Lightning Fabric.
        """
        loss = tensor
        try:
            # A hook answering None did not handle the call: its documented fallback runs, as
            # when nobody implements it (the loss as it is; autograd's own backward).
            if self._h_pre_backward is not None:
                scaled = self._h_pre_backward(tensor=tensor)
                tensor = tensor if scaled is None else scaled
            if self._h_backward is None or self._h_backward(fabric=self, tensor=tensor, module=model) is None:
                tensor.backward(*args, **kwargs)
        except (AttributeError, TypeError, RuntimeError) as exc:
            # Explained only once it failed: the per-step path does no checks of its own.
            problem = None if isinstance(exc, WeftError) else _backward_problem(loss, exc)
            if problem is None:
                raise
            raise problem from exc

    def clip_gradients(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        clip_val: float | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        error_if_nonfinite: bool = True,
    ) -> torch.Tensor | None:
        """Clip by value (``clip_val``) or by total norm (``max_norm``), after unscaling; returns the norm.

        As in Lightning Fabric, ``module`` may be the model returned by :meth:`setup` or the
        model itself, and a non-finite total norm raises :class:`~weft.errors.NonFiniteNormError`
        (a ``RuntimeError``) unless ``error_if_nonfinite=False``. With mixed precision that is
        what an overflow step gives: pass ``error_if_nonfinite=False`` to let ``optimizer.step()``
        skip such steps. The strategy checks before it clips, so the gradients are left as they were.
        """
        if clip_val is not None and max_norm is not None:
            raise ConfigurationError(
                f"clip_gradients(clip_val={clip_val!r}, max_norm={max_norm!r}): pass only one of them "
                "(clip_val clips each gradient value, max_norm the total norm)"
            )
        if clip_val is None and max_norm is None:
            raise ConfigurationError("clip_gradients() needs clip_val= (clip each value) or max_norm= (clip the total norm)")
        norm_type = _check_clip_value("norm_type", norm_type)
        if max_norm is not None:
            max_norm = _check_clip_value("max_norm", max_norm)
        else:
            clip_val = _check_clip_value("clip_val", clip_val)
        module, _ = unwrap_compiled(module)  # torch.compile(model) of the set-up model: the model inside
        if isinstance(module, _FabricModule):
            forward_module = module._forward_module
        elif isinstance(module, nn.Module):
            forward_module = module  # the user's own model object: its parameters are the ones set up
        else:
            raise MisuseTypeError(f"clip_gradients() takes the model (a torch.nn.Module) first, got {type(module).__name__}")
        raw_optimizer = unwrap(optimizer)
        if not hasattr(raw_optimizer, "param_groups"):
            raise OptimizerTypeError(
                f"clip_gradients() takes the optimizer second, got {type(optimizer).__name__}: "
                "fabric.clip_gradients(model, optimizer, max_norm=...)"
            )
        hook = self._pm.hook
        hook.weft_precision_unscale_gradients(optimizer=raw_optimizer)
        if max_norm is not None:
            norm = hook.weft_strategy_clip_gradients_norm(
                fabric=self, module=forward_module, optimizer=raw_optimizer, max_norm=float(max_norm),
                norm_type=float(norm_type), error_if_nonfinite=bool(error_if_nonfinite),
            )
            if norm is None:
                raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_clip_gradients_norm")
            if error_if_nonfinite:
                check_finite_norm(norm, norm_type)  # for a strategy that ignores error_if_nonfinite
            return norm
        done = hook.weft_strategy_clip_gradients_value(
            fabric=self, module=forward_module, optimizer=raw_optimizer, clip_val=float(clip_val)
        )
        if done is None:
            raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_clip_gradients_value")
        return None

    def no_backward_sync(self, module: nn.Module, enabled: bool = True) -> ContextManager[None]:
        """Skip gradient synchronisation in backward while ``enabled`` (gradient accumulation)."""
        module, _ = unwrap_compiled(module)
        if not isinstance(module, _FabricModule):
            raise MisuseTypeError(
                f"no_backward_sync() takes the model returned by fabric.setup(), got {type(module).__name__}: "
                "model = fabric.setup(model, ...) first"
            )
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

    def all_reduce(self, data: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        """Reduce tensors (or numbers, or collections of them) across processes, in place.

        As in Lightning Fabric, each tensor (moved to the device) receives the result and is
        returned: the caller's tensor itself when it is on the device already. An integer tensor
        stays integer, so its mean is truncated. Numbers become tensors first (bool as uint8, int
        as int32, float as float32).

        :param reduce_op: ``"mean"`` (or ``"avg"``), ``"sum"``, ``"max"``, ``"min"``, or the
            matching ``torch.distributed.ReduceOp``.
        :param group: only all processes (``None`` or ``torch.distributed.group.WORLD``).
        """
        op = _reduce_op_name(reduce_op)
        _check_group(group, "all_reduce")
        self._require_environment("all_reduce")
        reduce = self._collective("all_reduce")

        def one(tensor: torch.Tensor) -> torch.Tensor:
            tensor = tensor.to(self.device)  # the same object when already there
            out = reduce(fabric=self, tensor=tensor, reduce_op=op)
            if out is None:
                raise self._unanswered("all_reduce")
            if out is tensor:
                return tensor
            if out.shape != tensor.shape:
                raise MisuseError(
                    f"strategy {self.strategy_name!r} returned shape {tuple(out.shape)} from weft_strategy_all_reduce "
                    f"for a tensor of shape {tuple(tensor.shape)}"
                )
            with torch.no_grad():  # the input may be a leaf that requires grad
                tensor.copy_(out)  # casts back: an integer mean is truncated, as in Lightning
            return tensor

        return apply_to_tensors(_numbers_to_tensors(data), one)

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Gather tensors (or numbers, or collections of them) from every process.

        Each result has a new first dimension of size world_size, except under a one-process
        strategy (``single_device``), which returns each tensor as it is, as Lightning Fabric does.
        Numbers become tensors first, as in :meth:`all_reduce`.

        :param group: only all processes (``None`` or ``torch.distributed.group.WORLD``).
        """
        _check_group(group, "all_gather")
        self._require_environment("all_gather")
        gather = self._collective("all_gather")

        def one(tensor: torch.Tensor) -> torch.Tensor:
            out = gather(fabric=self, tensor=tensor.to(self.device).contiguous(), sync_grads=bool(sync_grads))
            if out is None:
                raise self._unanswered("all_gather")
            return out

        return apply_to_tensors(_numbers_to_tensors(data), one)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Send a picklable object from rank ``src`` to every process."""
        if not isinstance(src, int) or not (0 <= src < self._world_size):
            raise ConfigurationError(f"broadcast(src={src!r}) must name a rank in 0..{self._world_size - 1}")
        self._require_environment("broadcast")
        box = self._collective("broadcast")(fabric=self, obj=obj, src=src)
        if box is None:
            raise self._unanswered("broadcast")
        return box[0]

    def barrier(self, name: str | None = None) -> None:
        """Wait for every process (with a bounded timeout)."""
        self._require_environment("barrier")
        if self._collective("barrier")(fabric=self, name=name) is None:
            raise self._unanswered("barrier")

    def _collective(self, name: str) -> Callable[..., Any]:
        caller = getattr(self._pm.hook, f"weft_strategy_{name}")
        target = _resolve(caller)
        if target is None:
            raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_{name}")
        return target

    def _unanswered(self, name: str) -> MisuseError:
        """A collective hook answered ``None`` ("not handled"): weft has no fallback, so it must not
        pass for a result (``fabric.all_gather`` returning ``None``, a barrier that waited for nobody)."""
        return MisuseError(
            f"strategy {self.strategy_name!r}: weft_strategy_{name} returned None, which means 'not handled', and "
            f"weft has no fallback for it; the implementation must return its result (see weft.hookspecs.weft_strategy_{name})"
        )

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike, state: dict[str, Any], filter: dict[str, Callable] | None = None) -> None:
        """Save models, optimizers and any other state to ``path`` (atomically).

        Single-file strategies write from rank 0 alone, so ``if fabric.is_global_zero:
        fabric.save(...)`` works; sharded strategies need every rank to call it, and so does a
        ``weft.RNGState`` in the state (its states are gathered). A set-up data loader works
        either way: the writer reads the other ranks' epoch-start states from the process
        group's store.
        """
        _check_path(path, "save")
        if not isinstance(state, dict):
            raise MisuseTypeError(f"save() takes a dict of state, got {type(state).__name__}")
        _check_save_filter(filter, state)
        self._require_environment("save")
        raw = {k: unwrap(v) for k, v in state.items()}
        for key, value in raw.items():
            if isinstance(value, RNGState):
                raw[key] = value.gather(self)  # a collective: every rank's generators go to the writer
        precision_state = self._pm.hook.weft_precision_state_dict()
        if precision_state:
            raw[PRECISION_KEY] = precision_state
        strategy_state = self._pm.hook.weft_strategy_state_dict()
        if strategy_state:
            raw[STRATEGY_KEY] = strategy_state
        check_restorable(raw)  # refuse now what the default (weights_only) load could never restore
        try:
            done = self._pm.hook.weft_strategy_save_checkpoint(fabric=self, path=os.fspath(path), state=raw, filter=filter)
        except OSError as exc:
            if isinstance(exc, WeftError):
                raise
            raise _write_error(exc, path) from exc
        if done is None:
            raise MisuseError(f"strategy {self.strategy_name!r} does not implement weft_strategy_save_checkpoint")
        if self._h_loggers is not None and self._global_rank == 0 and self._loggers_used:
            # The logs on disk reach at least as far as the checkpoint does.
            self._h_loggers.call("weft_logger_save")

    def load(
        self, path: str | os.PathLike, state: dict[str, Any] | None = None, strict: bool = True, weights_only: bool = True
    ) -> dict[str, Any]:
        """Restore ``state`` in place from ``path``; returns the checkpoint's entries not in ``state``.

        Loading uses ``torch.load(weights_only=True)`` unless ``weights_only=False``
        is passed for a checkpoint you trust.
        """
        _check_path(path, "load")
        _check_not_empty(path)
        if state is not None and not isinstance(state, dict):
            raise MisuseTypeError(f"load() takes a dict of state (or None), got {type(state).__name__}")
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
            self._load_strategy_state(remainder, path, strict)
        return remainder

    def _load_strategy_state(self, remainder: dict[str, Any], path: str | os.PathLike, strict: bool) -> None:
        """Give the strategy its saved state; a strategy with state and a checkpoint without it is an
        error under ``strict`` (its schedule would silently restart), else it keeps its current state."""
        hook = self._pm.hook
        if STRATEGY_KEY in remainder:
            hook.weft_strategy_load_state_dict(state=remainder.pop(STRATEGY_KEY))
            return
        if strict and hook.weft_strategy_load_state_dict.get_hookimpls() and hook.weft_strategy_state_dict():
            from weft.errors import CheckpointKeyError

            raise CheckpointKeyError(
                f"The checkpoint {os.fspath(path)!r} has no {STRATEGY_KEY!r} entry, but strategy {self.strategy_name!r} "
                "keeps state in checkpoints (weft_strategy_state_dict): it was saved by another strategy or before "
                "that state existed. Pass strict=False to load it and keep the strategy's current state."
            )

    def load_raw(self, path: str | os.PathLike, obj: nn.Module | torch.optim.Optimizer, strict: bool = True, weights_only: bool = True) -> None:
        """Load a plain ``state_dict`` file (e.g. ``torch.save(model.state_dict(), path)``) into ``obj``."""
        _check_path(path, "load_raw")
        _check_not_empty(path)
        if not isinstance(unwrap(obj), (nn.Module, torch.optim.Optimizer)):
            # Anything else would be replaced, not filled: the call would load nothing.
            raise MisuseTypeError(
                f"load_raw() loads into a torch.nn.Module or a torch.optim.Optimizer, got {type(obj).__name__}; "
                "for a dict of objects use fabric.load(path, state)"
            )
        self._require_environment("load_raw")
        self._pm.hook.weft_strategy_load_checkpoint(
            fabric=self, path=os.fspath(path), state=unwrap(obj), strict=strict, weights_only=weights_only
        )

    # ------------------------------------------------------------------ callbacks and loggers

    def call(self, hook_name: str, *args: Any, **kwargs: Any) -> None:
        """Call ``hook_name(*args, **kwargs)`` on each callback that has such a method, in order, on every rank.

        Keyword arguments a callback's method does not take are left out for it. A callback that
        raises stops the call: the error names it, is chained to what it raised and is still an
        instance of that class (``except`` clauses written for it keep working).

        .. versionadded:: 0.2
        """
        if not isinstance(hook_name, str):
            raise MisuseTypeError(f"fabric.call() takes the method's name (a str) first, got {hook_name!r:.60}")
        callback_calls.call(self._callbacks, hook_name, args, kwargs, warn=self._global_rank == 0)

    def log(self, name: str, value: Any, step: int | None = None) -> None:
        """Log one number to every logger, from global rank 0: ``fabric.log("loss", loss, step=i)``.

        :param value: a number or a one-element tensor (detached and turned into a Python number).
        :param step: the step to record; ``None`` lets each logger count.

        .. versionadded:: 0.2
        """
        self.log_dict({name: value}, step=step)

    def log_dict(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log several numbers at once to every logger, from global rank 0.

        Every rank may call it (the others record nothing); tensors must hold one element each,
        and only rank 0 reads their values (no device synchronisation on the others).

        .. versionadded:: 0.2
        """
        if not isinstance(metrics, Mapping):
            if not callable(getattr(metrics, "items", None)):
                raise LogDictTypeError(
                    f"fabric.log_dict() takes a dict of name -> number, got {type(metrics).__name__}; "
                    "for a single value use fabric.log(name, value)"
                )
            metrics = dict(metrics.items())  # as Lightning, anything with .items() will do
        write = self._global_rank == 0 and self._h_loggers is not None
        converted = {key: _to_scalars(key, value, read=write) for key, value in metrics.items()}
        if not write:
            return
        if len(self._loggers) != len(self._logger_plugins):
            raise MisuseError("fabric.loggers was changed after Fabric(...); give every logger to Fabric(loggers=...)")
        self._loggers_used = True
        self._h_loggers.call("weft_logger_log_metrics", metrics=converted, step=step)

    def log_hyperparams(self, params: Any) -> None:
        """Record hyperparameters (a dict or an ``argparse.Namespace``) with every logger, from global rank 0.

        A weft addition: with Lightning Fabric, call ``fabric.logger.log_hyperparams(params)``
        (which works here too).

        .. versionadded:: 0.2
        """
        import argparse

        if isinstance(params, argparse.Namespace):
            params = vars(params)
        if not isinstance(params, Mapping):
            raise MisuseTypeError(f"fabric.log_hyperparams() takes a dict or an argparse.Namespace, got {type(params).__name__}")
        if self._global_rank != 0 or self._h_loggers is None:
            return
        self._loggers_used = True
        params = {key: _to_scalars(key, value, read=True) for key, value in params.items()}
        self._h_loggers.call("weft_logger_log_hyperparams", params=params)

    # ------------------------------------------------------------------ conveniences

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on the first process of each machine (local rank 0), as Lightning Fabric does."""
        if self._local_rank == 0:
            print(*args, **kwargs)

    @staticmethod
    def seed_everything(seed: int | None = None, workers: bool | None = None, verbose: bool = True) -> int:
        """Seed Python, NumPy (if installed) and torch; see :func:`weft.seed_everything`.

        Unlike the function, ``workers`` defaults to seeding DataLoader workers (``None`` means
        ``True``), as ``lightning.fabric.Fabric.seed_everything`` does.
        """
        from weft.utilities.seed import seed_everything

        return seed_everything(seed=seed, workers=True if workers is None else workers, verbose=verbose)

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
        status = "failed"
        try:
            result = self.function(fabric, *self.args, **self.kwargs)
            status = "success"
            return result
        finally:
            fabric._finalize_loggers(status)
            fabric._teardown()


def _to_scalars(key: Any, value: Any, read: bool) -> Any:
    """``value`` with each tensor in it turned into a Python number (``read``), or only checked to
    hold one element (other ranks: reading a value would wait for the device for nothing)."""

    def one(tensor: torch.Tensor) -> Any:
        if tensor.numel() != 1:
            raise MisuseValueError(
                f"cannot log {key!r}: it is a tensor of shape {tuple(tensor.shape)} ({tensor.numel()} elements), "
                "and loggers record single numbers. Log a number or a one-element tensor (e.g. its .mean()), "
                "or each element under its own name."
            )
        return tensor.item() if read else tensor

    return apply_to_tensors(value, one)


def _exit_status() -> str:
    """``"failed"`` when the script is ending because of an uncaught exception, else ``"success"``.

    Python records an uncaught exception in ``sys.last_value`` (``sys.last_exc`` from 3.12) before
    it runs the exit handlers.
    """
    failed = getattr(sys, "last_exc", None) is not None or getattr(sys, "last_value", None) is not None
    return "failed" if failed else "success"


def _is_lightning_module(module: Any) -> bool:
    """A Lightning ``LightningModule``, recognised as Lightning Fabric does (it has ``_fabric``),
    so weft never imports Lightning."""
    return hasattr(module, "_fabric")
