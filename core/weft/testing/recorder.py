"""Record the hook calls a plugin manager (or a Fabric) makes: names, order, arguments, results."""

from __future__ import annotations

from typing import Any, Iterable

import attrs
import pluggy

from weft import hookspecs

_UNSET = object()


@attrs.define
class HookCall:
    """One hook call.

    :param name: the hook, e.g. ``"weft_strategy_setup_module"``.
    :param kwargs: the arguments weft passed, by name.
    :param plugins: the names of the registered plugins implementing it, in call order.
    :param result: what the call returned (for first-result hooks, the first non-``None`` answer).
    :param exception: the exception it raised, if any.
    """

    name: str
    kwargs: dict[str, Any]
    plugins: list[str]
    result: Any = None
    exception: BaseException | None = None


def _passthrough_plugin(pm: pluggy.PluginManager) -> Any:
    """A plugin wrapping every implemented hook without changing its result.

    weft resolves per-step hooks to direct calls when one plugin implements them; a
    wrapper makes those dispatch through pluggy, where the monitor sees them. Hooks
    nobody implements get no wrapper: weft skips them (or uses its fallback), and
    must keep doing so while recording.
    """
    namespace: dict[str, Any] = {"__doc__": "Passes hooks through (weft.testing.HookRecorder)."}
    for hook_name in dir(hookspecs):
        caller = getattr(pm.hook, hook_name, None)
        if hook_name.startswith("weft_") and caller is not None and caller.get_hookimpls():

            def passthrough(self):  # noqa: ANN001 - a pluggy wrapper taking no hook arguments
                return (yield)

            passthrough.__name__ = hook_name
            namespace[hook_name] = hookspecs.hookimpl(wrapper=True)(passthrough)
    return type("HookRecorderPassthrough", (), namespace)()


class HookRecorder:
    """Record hook calls of a :class:`~weft.Fabric` or a ``pluggy.PluginManager``.

    Start recording before the calls of interest (for a Fabric, before
    ``fabric.setup``: set-up objects keep the hooks they resolved). Use it as a
    context manager, or call :meth:`start` and :meth:`stop`.

    Recorded: every hook weft calls through the plugin manager, and every per-step
    hook some plugin implements. A per-step hook nobody implements is not called at
    all (weft runs its fallback, e.g. ``tensor.backward()``), so it is not recorded.

    :param target: a Fabric or a plugin manager with weft's hook specifications.

    Example::

        with HookRecorder(fabric) as calls:
            model, optimizer = fabric.setup(model, optimizer)
        assert calls.names().index("weft_strategy_setup_module") >= 0
    """

    def __init__(self, target: Any) -> None:
        self._fabric = target if hasattr(target, "plugin_manager") else None
        self._pm: pluggy.PluginManager = target.plugin_manager if self._fabric is not None else target
        self.calls: list[HookCall] = []
        self._undo: Any = None
        self._passthrough: Any = None

    # ------------------------------------------------------------------ control

    def start(self) -> HookRecorder:
        if self._undo is not None:
            return self
        self._passthrough = _passthrough_plugin(self._pm)
        self._pm.register(self._passthrough, name="weft-testing-recorder")
        self._rebind()
        pending: list[HookCall] = []

        def before(hook_name: str, hook_impls: list, kwargs: dict) -> None:
            call = HookCall(hook_name, dict(kwargs), [i.plugin_name for i in hook_impls if i.plugin is not self._passthrough])
            self.calls.append(call)
            pending.append(call)

        def after(outcome: Any, hook_name: str, hook_impls: list, kwargs: dict) -> None:
            call = pending.pop() if pending else None
            if call is None:
                return
            exception = outcome.exception
            if exception is not None:
                call.exception = exception
            else:
                call.result = outcome.get_result()

        self._undo = self._pm.add_hookcall_monitoring(before, after)
        return self

    def stop(self) -> None:
        if self._undo is None:
            return
        self._undo()
        self._undo = None
        self._pm.unregister(self._passthrough)
        self._passthrough = None
        self._rebind()

    def _rebind(self) -> None:
        # The Fabric's per-step hooks were resolved when it was built; resolve them again.
        if self._fabric is not None:
            self._fabric._bind_hooks()

    def __enter__(self) -> HookRecorder:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ queries

    def names(self) -> list[str]:
        """The hooks called, in order (repeats included)."""
        return [c.name for c in self.calls]

    def calls_to(self, name: str) -> list[HookCall]:
        """Every recorded call of one hook."""
        return [c for c in self.calls if c.name == name]

    def called(self, name: str) -> bool:
        return any(c.name == name for c in self.calls)

    def assert_called(self, name: str, **kwargs: Any) -> HookCall:
        """Fail unless ``name`` was called (with these argument values, compared by ``==`` or identity)."""
        for call in self.calls_to(name):
            if all(call.kwargs.get(k, _UNSET) is v or call.kwargs.get(k, _UNSET) == v for k, v in kwargs.items()):
                return call
        detail = f" with {kwargs}" if kwargs else ""
        raise AssertionError(f"hook {name} was not called{detail}; calls were: {', '.join(self.names()) or 'none'}")

    def assert_order(self, names: Iterable[str]) -> None:
        """Fail unless the given hooks were first called in this relative order."""
        names = list(names)
        seen = self.names()
        missing = [n for n in names if n not in seen]
        if missing:
            raise AssertionError(f"hooks never called: {', '.join(missing)}; calls were: {', '.join(seen) or 'none'}")
        firsts = [seen.index(n) for n in names]
        if firsts != sorted(firsts):
            actual = sorted(names, key=seen.index)
            raise AssertionError(f"hooks ran in the order {actual}, expected {names}")

    def clear(self) -> None:
        self.calls.clear()
