"""``TensorBoardLogger``: scalars, hyperparameters and the model graph in TensorBoard event files.

Runs are laid out as Lightning's logger lays them out, ``root_dir/name/version_N``, so
existing TensorBoard habits (``tensorboard --logdir root_dir``) and tools keep working.
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

import torch
from weft.errors import ConfigurationError, ConfigurationTypeError, MisuseValueError
from weft.loggers import Logger, next_version
from weft.utilities.rank_zero import rank_zero_only

from weft_loggers import params as _params


class TensorBoardLogger(Logger):
    """Log to ``root_dir/name/version`` in TensorBoard format (``torch.utils.tensorboard.SummaryWriter``).

    :param root_dir: folder holding every experiment; created on the first write.
    :param name: experiment name, a subfolder of ``root_dir`` (``""`` or ``None``: none).
    :param version: ``None`` picks the next free ``version_N``; an int ``N`` means ``version_N``;
        a string is used as the folder name as is.
    :param default_hp_metric: log the placeholder metric ``hp_metric = -1`` with the hyperparameters
        when no metric is given, as Lightning does (TensorBoard's hparams view lists runs by metric).
    :param prefix: put in front of every metric name, joined with ``-``.
    :param sub_dir: an extra folder below the version folder.
    :param kwargs: passed to ``SummaryWriter`` (``max_queue``, ``flush_secs``, ...).

    Selected by name: ``Fabric(loggers="tensorboard")`` (all defaults: ``./logs/lightning_logs/version_N``).

    Only the process of global rank 0 writes; on the others every method does nothing
    and :attr:`experiment` is a stand-in that ignores calls.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        root_dir: str | os.PathLike = "logs",
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(root_dir, (str, os.PathLike)):
            raise ConfigurationTypeError(f"TensorBoardLogger(root_dir={root_dir!r}): pass a folder path (str or os.PathLike).")
        if name is not None and not isinstance(name, str):
            raise ConfigurationTypeError(f"TensorBoardLogger(name={name!r}): pass a string (or '' for no experiment folder).")
        if version is not None and (isinstance(version, bool) or not isinstance(version, (int, str))):
            raise ConfigurationTypeError(f"TensorBoardLogger(version={version!r}): pass an int N (folder version_N), a folder name, or None for the next free version.")
        if isinstance(version, int) and version < 0 or version == "":
            raise ConfigurationError(f"TensorBoardLogger(version={version!r}): pass an int >= 0, a non-empty folder name, or None.")
        if not isinstance(prefix, str):
            raise ConfigurationTypeError(f"TensorBoardLogger(prefix={prefix!r}): pass a string.")
        super_kwargs_ok = {"log_dir", "logdir"} & set(kwargs)
        if super_kwargs_ok:
            raise ConfigurationError(
                f"TensorBoardLogger({sorted(super_kwargs_ok)[0]}=...): the folder is root_dir/name/version[/sub_dir]; "
                "set those arguments instead."
            )
        self._root_dir = os.fspath(root_dir)
        self._name = name or ""
        self._version = version
        self._sub_dir = None if sub_dir is None else os.fspath(sub_dir)
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._kwargs = kwargs
        self._writer: Any = None
        self._next_step = 0  # where a metric logged without a step goes
        self._hparams: dict[str, Any] | None = None  # what the run's event file holds

    # ------------------------------------------------------------------ where

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        """The run's version; chosen on first use (the next free ``version_N``) and fixed from then on."""
        if self._version is None:
            self._version = next_version(os.path.join(self._root_dir, self._name))
        return self._version

    @property
    def root_dir(self) -> str:
        return self._root_dir

    @property
    def sub_dir(self) -> str | None:
        return self._sub_dir

    @property
    def log_dir(self) -> str:
        """``root_dir/name/version_N[/sub_dir]``, where the event files are written."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        path = os.path.join(self._root_dir, self._name, version)
        if self._sub_dir is not None:
            path = os.path.join(path, self._sub_dir)
        return os.path.expanduser(os.path.expandvars(path))

    @property
    def experiment(self) -> Any:
        """The ``SummaryWriter`` (created on first use), for anything beyond scalars:
        ``logger.experiment.add_histogram(...)``."""
        if rank_zero_only.rank != 0:
            return _IgnoreCalls()
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.log_dir, **self._kwargs)
        return self._writer

    # ------------------------------------------------------------------ what

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Add one point per metric at ``step``.

        :param metrics: ``{name: number}``; a value that is itself a dict of numbers becomes one
            chart with a line per key (``SummaryWriter.add_scalars``).
        :param step: the x position; ``None`` continues after the last step this logger wrote
            (0 first), so that points logged without a step still form a curve.
        """
        if rank_zero_only.rank != 0:
            return
        if not isinstance(metrics, Mapping):
            raise MisuseValueError(f"log_metrics() needs a dict of {{name: number}}, got {type(metrics).__name__} ({metrics!r}).")
        step = _params.check_step(step)
        if step is None:
            step = self._next_step
        converted: dict[str, Any] = {}
        for key, value in metrics.items():  # convert all first: a bad value must not leave half a step written
            tag = f"{self._prefix}{self.LOGGER_JOIN_CHAR}{key}" if self._prefix else str(key)
            if isinstance(value, Mapping):
                converted[tag] = {str(k): _params.scalar_value(f"{key}/{k}", v) for k, v in value.items()}
            else:
                converted[tag] = _params.scalar_value(str(key), value)
        writer = self.experiment
        for tag, value in converted.items():
            if isinstance(value, dict):
                writer.add_scalars(tag, value, step)
            else:
                writer.add_scalar(tag, value, step)
        self._next_step = max(self._next_step, step + 1)

    def log_hyperparams(self, params: Mapping[str, Any] | Namespace, metrics: Mapping[str, Any] | float | None = None, step: int | None = None) -> None:
        """Record hyperparameters for TensorBoard's HPARAMS view (once per run; calling again with
        the same values only logs ``metrics``).

        Nested dicts are flattened to ``"outer/inner"``; values other than numbers, strings and
        booleans are stored as their ``str()``. TensorBoard stores booleans as 1.0/0.0.

        :param metrics: metrics to show next to them (a number means ``{"hp_metric": number}``);
            without any, the placeholder ``hp_metric = -1`` when ``default_hp_metric``.
        :param step: the step of those metrics (default 0).
        """
        if rank_zero_only.rank != 0:
            return
        flat = {key: _params.hparam_value(value) for key, value in _params.flatten(_params.as_dict(params)).items()}
        if metrics is None:
            metrics = {"hp_metric": -1} if self._default_hp_metric else {}
        elif not isinstance(metrics, Mapping):
            metrics = {"hp_metric": metrics}
        values = {str(k): _params.scalar_value(str(k), v) for k, v in metrics.items()}
        step = _params.check_step(step) or 0
        if self._hparams is not None and flat != self._hparams:
            # TensorBoard shows the first hyperparameters of a run and ignores later ones: writing
            # them would look like success while the dashboard keeps showing the old values.
            changed = sorted(k for k in set(flat) | set(self._hparams) if flat.get(k, _MISSING) != self._hparams.get(k, _MISSING))
            raise MisuseValueError(
                f"log_hyperparams() was already called for {self.log_dir} with other values (differing: {', '.join(changed)}); "
                "TensorBoard only shows a run's first hyperparameters. Log them all in one call, or use a new "
                "TensorBoardLogger (a new version) for the new values."
            )
        from torch.utils.tensorboard.summary import hparams

        writer = self.experiment
        for key, value in values.items():
            writer.add_scalar(key, value, step)  # the metric itself, so the hparams view has a value to show
        if self._hparams is None:
            # Unlike Lightning, written even without any metric: hyperparameters are never dropped.
            file_writer = writer._get_file_writer()
            for summary in hparams(flat, values):
                file_writer.add_summary(summary, step)
            self._hparams = flat

    def log_graph(self, model: torch.nn.Module, input_array: Any = None) -> None:
        """Trace ``model`` on ``input_array`` (default: ``model.example_input_array``) and store its graph."""
        if rank_zero_only.rank != 0:
            return
        # A weft (or Lightning) set-up model exposes the user's module as the property `module`;
        # a plain attribute of that name is a submodule and must not be mistaken for it.
        if isinstance(getattr(type(model), "module", None), property):
            model = model.module
        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:
            raise MisuseValueError(
                f"log_graph({type(model).__name__}) needs an example input to trace the model: pass input_array=... "
                "(a tensor, or a tuple of forward()'s positional arguments) or set model.example_input_array."
            )
        if not isinstance(input_array, (torch.Tensor, tuple)):
            raise MisuseValueError(
                f"log_graph(input_array=...) got a {type(input_array).__name__}; pass a tensor or a tuple of forward()'s positional arguments."
            )
        self.experiment.add_graph(model, input_array)

    def save(self) -> None:
        """Write what is queued to disk (TensorBoard can show it from then on)."""
        if rank_zero_only.rank == 0 and self._writer is not None:
            self._writer.flush()

    def finalize(self, status: str) -> None:
        """Flush and close the event files. A later call writes a new event file in the same folder."""
        if rank_zero_only.rank == 0 and self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------ reading back

    def read_metrics(self) -> dict[str, list[tuple[int, float]]]:
        """What this run wrote, read with TensorBoard's own reader: ``{tag: [(step, value), ...]}``.

        Values come back as TensorBoard stores them, 32-bit floats. Dict metrics
        (``add_scalars``) live in their own subfolders and are not included.
        """
        from weft_loggers.reader import read_scalars

        self.save()
        return read_scalars(self.log_dir)

    def read_hyperparams(self) -> dict[str, Any]:
        """The hyperparameters of this run, as TensorBoard's HPARAMS view reads them."""
        from weft_loggers.reader import read_hparams

        self.save()
        return read_hparams(self.log_dir)

    def __getstate__(self) -> dict[str, Any]:
        # A SummaryWriter holds threads and open files; a copy sent to another process opens its own.
        state = self.__dict__.copy()
        state["_writer"] = None
        return state


_MISSING = object()


class _IgnoreCalls:
    """The ``experiment`` of a process other than global rank 0: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> "_IgnoreCalls":
        return self
