"""The :class:`Logger` base class: Lightning's logger interface, wired to weft's logger hooks.

.. versionadded:: 0.2
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import functools
import os
import threading
from typing import Any, Callable, Iterator, TypeVar

from weft.hookspecs import hookimpl

F = TypeVar("F", bound=Callable[..., Any])

# Set while Fabric calls a logger through its hooks: Fabric calls them on global rank 0 only, and
# knows the rank better than the environment variables a direct call has to go by.
_through_fabric = threading.local()


def process_rank() -> int:
    """This process's global rank as launchers publish it (``0`` when none does), for direct calls."""
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(variable)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                continue
    return 0


def writes_here() -> bool:
    """Whether a logger in this process may write: called through Fabric, or global rank 0."""
    return getattr(_through_fabric, "active", False) or process_rank() == 0


@contextlib.contextmanager
def called_by_fabric() -> Iterator[None]:
    """Mark the calls inside as made by Fabric on global rank 0."""
    previous = getattr(_through_fabric, "active", False)
    _through_fabric.active = True
    try:
        yield
    finally:
        _through_fabric.active = previous


def rank_zero_method(method: F) -> F:
    """Run ``method`` on global rank 0 only; elsewhere it does nothing and returns ``None``.

    As Lightning's loggers do, so a script calling ``fabric.logger.log_metrics(...)`` on every rank
    writes once.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if writes_here():
            return method(*args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


class _DummyExperiment:
    """What ``logger.experiment`` is on ranks other than 0: accepts any call and does nothing."""

    def nop(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, _: Any) -> Callable[..., None]:
        return self.nop

    def __getitem__(self, _: Any) -> _DummyExperiment:
        return self

    def __setitem__(self, *_: Any) -> None:
        pass


def rank_zero_experiment(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decorate a logger's ``experiment`` getter: on ranks other than 0 it gives a do-nothing object,
    so it never creates files there."""

    @functools.wraps(fn)
    def experiment(self: Any) -> Any:
        return fn(self) if writes_here() else _DummyExperiment()

    return experiment


def params_dict(params: Any) -> dict[str, Any]:
    """Hyperparameters as a dict: an ``argparse.Namespace`` becomes its ``vars``."""
    if isinstance(params, argparse.Namespace):
        return dict(vars(params))
    if params is None:
        return {}
    try:
        return dict(params)
    except (TypeError, ValueError):
        raise TypeError(
            f"log_hyperparams() takes a dict or an argparse.Namespace, got {type(params).__name__} ({params!r:.80})"
        ) from None


class Logger(abc.ABC):
    """Base class of weft's loggers, with the public interface of Lightning's ``Logger``.

    Subclasses implement :attr:`name`, :attr:`version`, :meth:`log_metrics` and
    :meth:`log_hyperparams`, and usually :meth:`save`; weft's logger hooks delegate to these
    methods. Fabric calls them on global rank 0 only, with tensors already turned into numbers.

    .. versionadded:: 0.2
    """

    @property
    @abc.abstractmethod
    def name(self) -> str | None:
        """The experiment's name."""

    @property
    @abc.abstractmethod
    def version(self) -> int | str | None:
        """The experiment's version."""

    @property
    def root_dir(self) -> str | None:
        """The folder all versions of the experiment go to (``None`` if not on a file system)."""
        return None

    @property
    def log_dir(self) -> str | None:
        """The folder this run writes to (``None`` if not on a file system)."""
        return None

    @property
    def group_separator(self) -> str:
        """What separates a metric's group from its name (``"train/loss"``)."""
        return "/"

    @property
    def experiment(self) -> Any:
        """The underlying writer or client object (``None`` when there is none)."""
        return None

    @abc.abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record metrics at ``step`` (``None``: the logger counts)."""

    @abc.abstractmethod
    def log_hyperparams(self, params: dict[str, Any] | argparse.Namespace, *args: Any, **kwargs: Any) -> None:
        """Record the run's hyperparameters."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Record the model's graph (nothing, unless the logger supports it)."""

    def save(self) -> None:
        """Write what is buffered."""

    def finalize(self, status: str) -> None:
        """End the run (``"success"``, ``"failed"`` or ``"finished"``): write what is buffered."""
        self.save()

    # weft's hooks, implemented through the methods above

    @hookimpl
    def weft_logger_log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        with called_by_fabric():
            self.log_metrics(metrics, step)

    @hookimpl
    def weft_logger_log_hyperparams(self, params: dict[str, Any]) -> None:
        with called_by_fabric():
            self.log_hyperparams(params)

    @hookimpl
    def weft_logger_save(self) -> None:
        with called_by_fabric():
            self.save()

    @hookimpl
    def weft_logger_finalize(self, status: str) -> None:
        with called_by_fabric():
            self.finalize(status)


def next_version(folder: str) -> int:
    """The ``version_N`` a new run in ``folder`` takes: one more than the highest existing
    ``version_N`` folder, 0 when there is none (or no folder), as Lightning's loggers number runs.

    .. versionadded:: 0.2
    """
    import re

    try:
        entries = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    found = [
        int(match.group(1))
        for entry in entries
        if (match := re.fullmatch(r"version_(\d+)", entry)) and os.path.isdir(os.path.join(folder, entry))
    ]
    return max(found) + 1 if found else 0
