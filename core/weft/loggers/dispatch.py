"""How Fabric reaches its loggers: each through weft's logger hooks, one at a time, so a failure names it.

Objects that follow Lightning's logger interface (a ``log_metrics`` method; ``log_hyperparams``,
``save`` and ``finalize`` used when present) are wrapped in :class:`LightningLoggerAdapter`, which
implements the hooks; weft loggers implement them themselves.

.. versionadded:: 0.2
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable

from weft.attributed import AttributedError, attributed
from weft.errors import ConfigurationError, ConfigurationTypeError
from weft.hookspecs import hookimpl

HOOKS = ("weft_logger_log_metrics", "weft_logger_log_hyperparams", "weft_logger_save", "weft_logger_finalize")
_METHOD = {hook: hook[len("weft_logger_") :] for hook in HOOKS}


class LoggerError(AttributedError):
    """A logger failed to record or write. Also an instance of the class the logger raised."""


class LightningLoggerAdapter:
    """Implements weft's logger hooks for an object with Lightning's logger interface.

    It calls the object's methods as Lightning Fabric does (keyword arguments); a method the
    object lacks is skipped, except ``log_metrics``, which every logger has.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @hookimpl
    def weft_logger_log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        self.logger.log_metrics(metrics=metrics, step=step)

    @hookimpl
    def weft_logger_log_hyperparams(self, params: dict[str, Any]) -> None:
        method = getattr(self.logger, "log_hyperparams", None)
        if method is None:
            raise AttributeError(f"{type(self.logger).__name__} has no log_hyperparams method")
        method(params)

    @hookimpl
    def weft_logger_save(self) -> None:
        method = getattr(self.logger, "save", None)
        if callable(method):
            method()

    @hookimpl
    def weft_logger_finalize(self, status: str) -> None:
        method = getattr(self.logger, "finalize", None)
        if callable(method):
            method(status)


def _implements_logger_hooks(obj: Any) -> bool:
    cls = type(obj)
    return any(hasattr(getattr(cls, hook, None), "weft_impl") for hook in HOOKS)


def as_plugin(logger: Any, installed: Callable[[], list[str]]) -> Any:
    """What to register with the plugin manager for one logger the user gave.

    :param installed: lists the installed logger names, for the error message.
    """
    if _implements_logger_hooks(logger):
        return logger
    if callable(getattr(logger, "log_metrics", None)):
        return LightningLoggerAdapter(logger)
    raise ConfigurationTypeError(
        f"loggers= holds {logger!r:.80} ({type(logger).__name__}), which is not a logger: pass a logger name "
        f"(installed: {', '.join(installed()) or 'none'}), a weft.loggers.Logger, or an object with "
        "Lightning's logger interface (a log_metrics(metrics, step) method)"
    )


def describe(plugin: Any) -> str:
    """``CSVLogger (writing to logs/x/version_0)``: the logger as the user knows it, and where it writes."""
    logger = plugin.logger if isinstance(plugin, LightningLoggerAdapter) else plugin
    where = None
    for attribute in ("log_dir", "root_dir", "save_dir"):
        try:
            where = getattr(logger, attribute, None)
        except Exception:  # noqa: BLE001 - the description must not fail in turn
            where = None
        if where:
            break
    return f"{type(logger).__name__}" + (f" (writing to {os.fspath(where)})" if where else "")


class LoggerCalls:
    """Each logger hook's implementations, in the order the loggers were given, resolved once."""

    def __init__(self, plugin_manager: Any) -> None:
        self._impls: dict[str, list[tuple[Any, Callable[..., Any], tuple[str, ...]]]] = {}
        for hook in HOOKS:
            impls = getattr(plugin_manager.hook, hook).get_hookimpls()
            for impl in impls:
                if impl.hookwrapper or impl.wrapper:
                    raise ConfigurationError(
                        f"{describe(impl.plugin)} implements {hook} as a wrapper; weft calls logger hooks one "
                        "logger at a time (so a failure names its logger): implement it as a plain @hookimpl"
                    )
            self._impls[hook] = [(impl.plugin, impl.function, tuple(impl.argnames)) for impl in impls]

    def __bool__(self) -> bool:
        return any(self._impls.values())

    def call(self, hook: str, **kwargs: Any) -> None:
        """Call ``hook`` on every logger in order; the first failure stops it, naming the logger."""
        impls = self._impls[hook]
        for plugin, function, argnames in impls:
            try:
                function(*[kwargs[name] for name in argnames])
            except Exception as exc:
                message = f"logger {describe(plugin)} failed in {_METHOD[hook]}: {type(exc).__name__}: {exc}"
                raise attributed(LoggerError, exc, message) from exc


def finalize_on_sigterm(finalize: Callable[[], None]) -> None:
    """When a launcher stops this process (SIGTERM, e.g. because another rank failed), run
    ``finalize`` first, then end as SIGTERM would have.

    Only where nothing else handles SIGTERM already, and only from the main thread (where
    Python runs signal handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def handler(signum: int, frame: Any) -> None:
        try:
            finalize()
        finally:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)
