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
