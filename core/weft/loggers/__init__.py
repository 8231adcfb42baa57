"""Loggers for ``Fabric(loggers=...)``: the :class:`Logger` base class and the built-in :class:`CSVLogger`.

A logger plugin is selected by name (entry-point group ``weft.loggers``: ``loggers="csv"``) or
passed as an object. Objects following Lightning's ``Logger`` interface are accepted as they are.
Imported on first use only (``import weft`` does not import it).

.. versionadded:: 0.2
"""

from __future__ import annotations

from weft.loggers.base import Logger, next_version, rank_zero_experiment
from weft.loggers.csv_logs import CSVLogger

__all__ = ["CSVLogger", "Logger", "next_version", "rank_zero_experiment"]
