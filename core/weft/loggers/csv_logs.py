"""``CSVLogger``: metrics to ``root_dir/name/version_N/metrics.csv``, as Lightning's CSVLogger writes them.

Hyperparameters go to ``hparams.yaml`` beside it (written without a YAML library, see
:mod:`weft.loggers._yaml`); Lightning Fabric's CSVLogger refuses them.

.. versionadded:: 0.2
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings
from typing import Any

from weft.loggers import _yaml
from weft.loggers.base import Logger, next_version, params_dict, rank_zero_experiment, rank_zero_method


class CSVLogger(Logger):
    """Log to CSV files on the local file system.

    :param root_dir: the folder every experiment and version goes to.
    :param name: the experiment's name, a subfolder of ``root_dir`` (``None`` or ``""``: none).
    :param version: an int (folder ``version_N``), a string (the folder's name), or ``None`` for
        the next free ``version_N``. A version whose folder holds a ``metrics.csv`` already is overwritten.
    :param prefix: put in front of every metric name, joined with ``-``.
    :param flush_logs_every_n_steps: write buffered rows when ``(step + 1)`` is a multiple of this.
        Everything left is written when Fabric finalizes the logger, at the end of the run.

    Example::

        fabric = Fabric(loggers=CSVLogger("logs", name="mnist"))
        fabric.log("loss", 0.25, step=0)   # logs/mnist/version_0/metrics.csv

    .. versionadded:: 0.2
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        root_dir: str | os.PathLike = "logs",
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        if isinstance(flush_logs_every_n_steps, bool) or not isinstance(flush_logs_every_n_steps, int) or flush_logs_every_n_steps < 1:
            raise ValueError(f"CSVLogger(flush_logs_every_n_steps={flush_logs_every_n_steps!r}): pass a positive int")
        self._root_dir = os.fspath(root_dir)
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_every = flush_logs_every_n_steps
        self._experiment: CSVWriter | None = None
        self._rows_logged = 0  # counts rows for step=None across flushes

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        """The version given, or the next free one (fixed on first read)."""
        if self._version is None:
            self._version = next_version(os.path.join(self._root_dir, self._name))
        return self._version

    @property
    def root_dir(self) -> str:
        return self._root_dir

    @property
    def log_dir(self) -> str:
        """``root_dir/name/version_N`` (or ``root_dir/name/VERSION`` for a string version)."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return os.path.join(self._root_dir, self._name, version)

    @property
    @rank_zero_experiment
    def experiment(self) -> CSVWriter:
        """The :class:`CSVWriter` (created, with its folder, on first use)."""
        if self._experiment is None:
            os.makedirs(self._root_dir, exist_ok=True)
            self._experiment = CSVWriter(self.log_dir)
        return self._experiment

    @rank_zero_method
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._prefix:
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in metrics.items()}
        if step is None:
            step = self._rows_logged
        self.experiment.log_metrics(metrics, step)
        self._rows_logged += 1
        if (step + 1) % self._flush_every == 0:
            self.save()

    @rank_zero_method
    def log_hyperparams(self, params: dict[str, Any] | argparse.Namespace, *args: Any, **kwargs: Any) -> None:
        self.experiment.log_hparams(params_dict(params))

    @rank_zero_method
    def save(self) -> None:
        self.experiment.save()

    @rank_zero_method
    def finalize(self, status: str) -> None:
        if self._experiment is None:
            return  # nothing was logged in this process (e.g. the one that launched the workers)
        self.save()


class CSVWriter:
    """Buffers rows and writes them to ``log_dir/metrics.csv``; hyperparameters to ``log_dir/hparams.yaml``.

    The header is the sorted union of every key seen (``step`` included); when a new key
    appears, the file is rewritten with the wider header (aside, then moved into place).
    """

    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics: list[dict[str, Any]] = []
        self.metrics_keys: list[str] = []
        self.hparams: dict[str, Any] = {}
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        self.hparams_file_path = os.path.join(log_dir, self.NAME_HPARAMS_FILE)
        self._hparams_dirty = False
        if os.path.isdir(log_dir) and os.listdir(log_dir):
            warnings.warn(
                f"Experiment logs directory {log_dir} exists and is not empty. Previous log files in this "
                "directory will be deleted when the new ones are saved!",
                stacklevel=2,
            )
            if os.path.isfile(self.metrics_file_path):
                os.remove(self.metrics_file_path)
        os.makedirs(log_dir, exist_ok=True)

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        """Buffer one row (``step`` defaults to the number of rows buffered)."""
        if step is None:
            step = len(self.metrics)
        torch = sys.modules.get("torch")  # a tensor can only exist if torch is imported already
        tensor = torch.Tensor if torch is not None else ()
        row = {k: (v.item() if isinstance(v, tensor) else v) for k, v in metrics_dict.items()}
        row["step"] = step
        self.metrics.append(row)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Add hyperparameters (written at the next :meth:`save`)."""
        self.hparams.update(params)
        self._hparams_dirty = True

    def save(self) -> None:
        """Write the buffered rows (and hyperparameters, if new ones came)."""
        if self._hparams_dirty:
            _write_aside(self.hparams_file_path, _yaml.dump(self.hparams))
            self._hparams_dirty = False
        if not self.metrics:
            return
        new_keys = sorted(set().union(*self.metrics) - set(self.metrics_keys))
        exists = os.path.isfile(self.metrics_file_path)
        self.metrics_keys = sorted(self.metrics_keys + new_keys)
        if new_keys and exists:
            self._rewrite_with_header()
        with open(self.metrics_file_path, "a" if exists else "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            if not exists:
                writer.writeheader()
            writer.writerows(self.metrics)
        self.metrics = []

    def _rewrite_with_header(self) -> None:
        with open(self.metrics_file_path, newline="") as file:
            rows = list(csv.DictReader(file))
        tmp = self.metrics_file_path + ".tmp"
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.metrics_file_path)


def _write_aside(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(tmp, path)
