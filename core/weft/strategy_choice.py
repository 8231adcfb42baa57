"""``strategy="auto"``: the installed strategy whose declared capabilities suit the job.

Each installed strategy is created once (which imports its module) and asked for its
:class:`~weft.records.StrategyCapabilities`. Among those whose ``multi_process`` suits the
number of processes (``False`` for one process, ``True`` for several), the highest
``auto_priority`` wins; ``None`` is never chosen; a tie goes to the name that sorts first.
Core names no strategy here: what is installed decides.

The answer is remembered per process for the same installed set (entry points, allowlist
and ``weft.register`` calls), so only the first ``Fabric(...)`` of a process pays for the scan.

.. versionadded:: 0.3
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

from weft.errors import DOCS, ConfigurationError
from weft.records import StrategyCapabilities


class Candidate(NamedTuple):
    """One installed strategy as the scan saw it."""

    name: str  #: the name to pass to ``Fabric(strategy=...)`` (qualified when two distributions claim it)
    capabilities: StrategyCapabilities | None  #: ``None`` when it could not be created or asked
    problem: str  #: why it could not be considered ('' when it could)


# (installed set, multi-process?) -> the chosen name, or None when nothing suited.
_chosen: dict[tuple[Any, ...], str | None] = {}


def _installed_key() -> tuple[Any, ...]:
    """What decides the scan's answer: the entry-point table's key and the registered strategies."""
    from weft import registry

    registered = tuple(sorted((name, id(record)) for (kind, name), record in registry._registered.items() if kind == "strategies"))
    return (tuple(sys.path), registry._policy(), registered)


def _asker() -> Any:
    """One plugin manager for the whole scan: a candidate is registered, asked, unregistered.
    (A manager per candidate, with the contract checks a Fabric runs, cost about as much as
    importing the plugins; the chosen strategy is checked when its Fabric registers it.)"""
    import pluggy

    from weft import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _capabilities_of(pm: Any, plugin: Any, name: str) -> StrategyCapabilities:
    from weft.capabilities import strategy_capabilities

    pm.register(plugin, name="candidate")
    try:
        return strategy_capabilities(pm.hook, who=f"strategy {name!r}")
    finally:
        pm.unregister(name="candidate")


def scan() -> tuple[list[Candidate], dict[str, Any]]:
    """Create every installed strategy once and read its capabilities.

    :returns: the candidates sorted by name, and the plugin objects created (name -> object),
        unused, so the winner need not be created twice.
    """
    from weft import registry
    from weft.compat import incompatibility

    candidates, plugins = [], {}
    pm = _asker()
    seen: dict[tuple[str | None, str], str] = {}  # (distribution, entry-point value) -> first name
    for name, records in sorted(registry.records("strategies").items()):
        for record in records:
            qualified = f"{record.distribution}:{name}" if len(records) > 1 and record.distribution else name
            alias_of = seen.setdefault((record.distribution, record.value), qualified)
            if alias_of != qualified:
                continue  # another name for the same factory (ddp_notebook = ddp_fork): same answer
            problem = incompatibility(record)
            if problem:
                candidates.append(Candidate(qualified, None, problem))
                continue
            try:
                plugin = registry.create("strategies", qualified)
                capabilities = _capabilities_of(pm, plugin, qualified)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break "auto"; it is reported
                candidates.append(Candidate(qualified, None, f"{type(exc).__name__}: {exc}"))
                continue
            candidates.append(Candidate(qualified, capabilities, ""))
            plugins[qualified] = plugin
    return candidates, plugins


def best(candidates: list[Candidate], multi_process: bool) -> str | None:
    """The name of the highest ``auto_priority`` among ``candidates`` with that ``multi_process``."""
    eligible = [
        c for c in candidates
        if c.capabilities is not None and c.capabilities.auto_priority is not None and c.capabilities.multi_process == multi_process
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (-c.capabilities.auto_priority, c.name)).name


def choose(world_size: int) -> tuple[str, Any | None]:
    """The strategy ``"auto"`` means for ``world_size`` processes.

    :returns: its name, and a new plugin object when the scan just created one (else ``None``:
        create it by name).
    :raises ConfigurationError: when no installed strategy suits, naming the world size and
        every installed strategy with its capabilities.
    """
    multi = world_size > 1
    key = (_installed_key(), multi)
    if key in _chosen and _chosen[key] is not None:
        return _chosen[key], None
    candidates, plugins = scan()
    name = best(candidates, multi)
    _chosen[key] = name
    if name is None:
        raise ConfigurationError(_none_suits(world_size, candidates))
    return name, plugins[name]


def launching(candidates: list[Candidate]) -> list[str]:
    """Names of the candidates that start their own processes (``launches_processes``)."""
    return [c.name for c in candidates if c.capabilities is not None and c.capabilities.multi_process and c.capabilities.launches_processes]


def describe(candidate: Candidate) -> str:
    """One strategy with what it declares, for messages."""
    caps = candidate.capabilities
    if caps is None:
        return f"{candidate.name} (not considered: {candidate.problem})"
    return (
        f"{candidate.name} (multi_process={caps.multi_process}, launches_processes={caps.launches_processes}, "
        f"auto_priority={caps.auto_priority})"
    )


def _install_hints() -> str:
    """Published strategies that are not installed (from the install-hint catalogue)."""
    from weft import catalogue, registry

    installed = set(registry.records("strategies"))
    missing = [f"{name} ({catalogue.provider('strategies', name)})" for name in catalogue.published_names("strategies") if name not in installed]
    return f" Published strategies not installed here: {', '.join(missing)}." if missing else ""


def _none_suits(world_size: int, candidates: list[Candidate]) -> str:
    wanted = "multi_process=True" if world_size > 1 else "multi_process=False"
    listed = "; ".join(describe(c) for c in candidates) or "none"
    return (
        f"strategy='auto' found no installed strategy for {world_size} process(es): 'auto' chooses among "
        f"strategies declaring {wanted} and an auto_priority (weft_strategy_capabilities). Installed strategies: "
        f"{listed}.{_install_hints()} Pass strategy=NAME explicitly, install a strategy that suits, or change devices. "
        f"See {DOCS}/plugins.md"
    )
