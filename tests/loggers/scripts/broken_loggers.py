"""Logger plugins that each break one rule, installed by tests/loggers/test_logger_kit.py as the
distribution weft-broken-loggers, to prove each check of ``pytest --weft-logger`` can fail.

``GoodLogger`` implements the hooks directly (no base class) and writes JSON lines it can read
back; every other class breaks one thing about it.
"""

from __future__ import annotations

import json
import os

from weft import hookimpl


def _next_version(folder):
    taken = [int(e[len("version_"):]) for e in os.listdir(folder) if e.startswith("version_")] if os.path.isdir(folder) else []
    return max(taken) + 1 if taken else 0


class GoodLogger:
    def __init__(self):
        self._version = None
        self._counter = 0

    name = "good"

    @property
    def version(self):
        if self._version is None:
            self._version = _next_version(os.path.join("logs", self.name))
        return self._version

    @property
    def log_dir(self):
        return os.path.join("logs", self.name, f"version_{self.version}")

    def _append(self, record):
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    @hookimpl
    def weft_logger_log_metrics(self, metrics, step):
        if step is None:
            step = self._counter
        self._counter = step + 1
        self._append({"step": step, "metrics": metrics})

    @hookimpl
    def weft_logger_log_hyperparams(self, params):
        self._append({"hparams": params})

    @hookimpl
    def weft_logger_save(self):
        pass  # every record is written when logged

    @hookimpl
    def weft_logger_finalize(self, status):
        pass

    def _records(self):
        path = os.path.join(self.log_dir, "log.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f]

    def read_metrics(self):
        out = {}
        for record in self._records():
            for name, value in record.get("metrics", {}).items():
                out.setdefault(name, []).append((record["step"], value))
        return out

    def read_hyperparams(self):
        out = {}
        for record in self._records():
            out.update(record.get("hparams", {}))
        return out


class MissingHookLogger(GoodLogger):
    """Never closes its run: no weft_logger_finalize."""

    weft_logger_finalize = None


class WrongSignatureLogger(GoodLogger):
    """Takes an argument the specification does not have."""

    @hookimpl
    def weft_logger_log_metrics(self, metrics, stride):
        pass


class RaisingLogger(GoodLogger):
    @hookimpl
    def weft_logger_log_metrics(self, metrics, step):
        raise RuntimeError("log_metrics exploded on purpose")


class DroppingLogger(GoodLogger):
    """Writes every metric one step late: a silent wrong result only reading back can catch."""

    @hookimpl
    def weft_logger_log_metrics(self, metrics, step):
        GoodLogger.weft_logger_log_metrics(self, metrics, None if step is None else step + 1)


class LostHyperparamsLogger(GoodLogger):
    @hookimpl
    def weft_logger_log_hyperparams(self, params):
        self._append({"hparams": {k: v for k, v in params.items() if k != "lr"}})


class NoLogDirLogger(GoodLogger):
    """Lacks a property of Lightning's Logger interface."""

    log_dir = property(lambda self: (_ for _ in ()).throw(AttributeError("no log_dir here")))

    def _append(self, record):
        pass


class OverwritingLogger(GoodLogger):
    """Always version 0: a second run writes into the first one's folder."""

    @property
    def version(self):
        return 0
