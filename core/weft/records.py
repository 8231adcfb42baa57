"""Small typed records passed between weft and its plugins."""

from __future__ import annotations

from typing import Any, Callable

import attrs


@attrs.frozen
class PrecisionDtypes:
    """The dtypes a precision plugin works with.

    :param param: dtype parameters are stored in.
    :param compute: dtype the forward and backward compute in.
    :param reduce: dtype gradients are reduced (all-reduce / reduce-scatter) in.
    :param autocast: whether compute happens under ``torch.autocast`` (mixed precision).

    .. versionadded:: 0.1
    """

    param: Any
    compute: Any
    reduce: Any
    autocast: bool = False


@attrs.frozen
class Launched:
    """What :func:`~weft.hookspecs.weft_strategy_launch` returns when it started processes.

    :param result: rank 0's return value (``None`` when the whole script ran).

    .. versionadded:: 0.1
    """

    result: Any = None


@attrs.frozen
class PluginRecord:
    """One name a plugin answers to, as the registry knows it before loading it.

    :param kind: ``"accelerators"``, ``"precisions"``, ``"strategies"`` or ``"environments"``.
    :param name: the string users pass (``"fsdp"``, ``"bf16-mixed"``).
    :param value: where the factory lives (``"module:attr"``), or a description.
    :param distribution: the distribution that registers it (``None`` for ``weft.register``).
    :param version: that distribution's version.
    :param load: a no-argument callable returning the plugin factory.
    :param requires_core: the core version range the distribution declares (``Requires-Dist: weft...``).

    .. versionadded:: 0.1
    """

    kind: str
    name: str
    value: str
    distribution: str | None
    version: str | None
    load: Callable[[], Any] = attrs.field(repr=False, eq=False)
    requires_core: str | None = None


# Values a StrategyCapabilities field may take, for validation and for messages.
GRADIENT_SYNC = ("every_step", "periodic", "never")
PARAMETER_LAYOUTS = ("replicated", "sharded")
CHECKPOINT_LAYOUTS = ("file", "folder")


def _one_of(choices: tuple[str, ...]) -> Any:
    def check(instance: Any, attribute: Any, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"StrategyCapabilities({attribute.name}={value!r}): expected one of {', '.join(map(repr, choices))}")

    return check


@attrs.frozen
class StrategyCapabilities:
    """What a strategy guarantees, as answered by :func:`~weft.hookspecs.weft_strategy_capabilities`.

    Core and the conformance kit read this record instead of assuming that every strategy
    behaves like data-parallel DDP: the kit runs the checks that apply to what a strategy
    declares and says which it skipped, and ``strategy="auto"`` is chosen from it.

    :param multi_process: the strategy runs one process per device and can span several.
        ``False`` for a one-process strategy (``single_device``).
    :param launches_processes: :func:`~weft.hookspecs.weft_strategy_launch` starts the
        processes when the cluster environment did not (``python train.py`` works).
    :param gradient_sync: when gradients (or parameters) are made equal across processes:
        ``"every_step"`` (after each ``fabric.backward``, as DDP and FSDP), ``"periodic"``
        (every few steps, e.g. Local SGD averaging parameters) or ``"never"``.
    :param sync_every: for ``"periodic"``: the number of optimizer steps between syncs.
    :param parameters: ``"replicated"`` (each process holds all parameters) or ``"sharded"``.
    :param no_backward_sync: ``fabric.no_backward_sync`` really skips the gradient sync.
    :param shards_data: ``fabric.setup_dataloaders`` gives each process its own part of the
        data (a distributed sampler). ``False``: every process sees all of it.
    :param checkpoint: ``"file"`` (one file) or ``"folder"`` (a sharded checkpoint folder).
    :param auto_priority: for ``strategy="auto"``: among installed strategies that suit the
        number of processes (``multi_process``), the highest priority wins. ``None``:
        never chosen automatically. First-party: ``single_device`` 10, ``ddp`` 10.

    .. versionadded:: 0.3
    """

    multi_process: bool = True
    launches_processes: bool = True
    gradient_sync: str = attrs.field(default="every_step", validator=_one_of(GRADIENT_SYNC))
    sync_every: int | None = None
    parameters: str = attrs.field(default="replicated", validator=_one_of(PARAMETER_LAYOUTS))
    no_backward_sync: bool = True
    shards_data: bool = True
    checkpoint: str = attrs.field(default="file", validator=_one_of(CHECKPOINT_LAYOUTS))
    auto_priority: int | None = None
