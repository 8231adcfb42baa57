"""A third-party logger as its author would write it: an MLflow-like run store on the local disk.

tests/loggers installs it as the distribution ``weft-miniflow`` (entry point ``miniflow`` in the
group ``weft.loggers``) through real *.dist-info metadata, without weft knowing anything about it.
Layout, like MLflow's file store: ``mlruns/<experiment>/<run id>/metrics/<name>`` holds one line
``<timestamp ms> <value> <step>`` per point, ``params/<name>`` one value, ``status`` the outcome.
"""

from __future__ import annotations

import os
import time
import uuid

from weft.loggers import Logger

#: Every call the hooks delegated, for tests to compare with what other loggers were given.
CALLS: list[tuple] = []


class MiniFlowLogger(Logger):
    def __init__(self, root_dir="mlruns", experiment="default"):
        self._root_dir, self._experiment = root_dir, experiment
        self._run_id = uuid.uuid4().hex  # a new run each time: never writes into another run
        self._pending: list[tuple[str, float, int]] = []
        self._next_step = 0

    @property
    def name(self):
        return self._experiment

    @property
    def version(self):
        return self._run_id

    @property
    def root_dir(self):
        return self._root_dir

    @property
    def log_dir(self):
        return os.path.join(self._root_dir, self._experiment, self._run_id)

    def log_metrics(self, metrics, step=None):
        CALLS.append(("log_metrics", dict(metrics), step))
        if step is None:
            step = self._next_step
        self._next_step = step + 1
        self._pending += [(name, float(value), step) for name, value in metrics.items()]

    def log_hyperparams(self, params, *args, **kwargs):
        CALLS.append(("log_hyperparams", dict(params)))
        for name, value in params.items():
            self._write(os.path.join("params", name), f"{value}", "w")

    def save(self):
        CALLS.append(("save",))
        now = int(time.time() * 1000)
        for name, value, step in self._pending:
            self._write(os.path.join("metrics", name), f"{now} {value!r} {step}\n", "a")
        self._pending.clear()

    def finalize(self, status):
        CALLS.append(("finalize", status))
        self.save()
        self._write("status", status, "w")

    def _write(self, relative, text, mode):
        path = os.path.join(self.log_dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(text)

    # The logger kit reads what was written through these (pytest --weft-logger=miniflow).
    def read_metrics(self):
        folder = os.path.join(self.log_dir, "metrics")
        out = {}
        for parent, _, files in os.walk(folder):
            for file in files:
                name = os.path.relpath(os.path.join(parent, file), folder).replace(os.sep, "/")
                with open(os.path.join(parent, file)) as f:
                    points = [line.split() for line in f if line.strip()]
                out[name] = sorted((int(step), float(value)) for _, value, step in points)
        return out

    def read_hyperparams(self):
        folder = os.path.join(self.log_dir, "params")
        out = {}
        for parent, _, files in os.walk(folder):
            for file in files:
                name = os.path.relpath(os.path.join(parent, file), folder).replace(os.sep, "/")
                with open(os.path.join(parent, file)) as f:
                    text = f.read()
                try:
                    out[name] = float(text) if "." in text else int(text)
                except ValueError:
                    out[name] = text
        return out
