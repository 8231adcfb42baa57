"""seed_everything under DDP: its signature, what it returns and reports, and DataLoader workers.

With ``workers=True`` each of 2 workers on each of 2 ranks draws its own numbers; a user's
``worker_init_fn`` is kept; ``Fabric.seed_everything`` seeds workers unless told not to.
"""

import contextlib
import inspect
import os
import random
import sys
import tempfile
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from compat import Recorder, api

fabric = api.Fabric(accelerator="cpu", devices=2, strategy="ddp")
fabric.launch()
rec = Recorder(fabric.global_rank)


@contextlib.contextmanager
def stderr_lines(into):
    """Collect what is written to file descriptor 2 (where both frameworks report the seed)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            into.extend(capture.read().decode().splitlines())


def call(key, *args, **kwargs):
    """Call seed_everything; record its result, what it reported and which warnings it gave."""
    lines = []
    with stderr_lines(lines), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = rec.error(f"{key}/raised", api.seed_everything, *args, **kwargs)
    rec.put(f"{key}/returned", result)
    rec.put(f"{key}/verbose_output", lines)
    rec.put(f"{key}/warnings", [[w.category.__name__, str(w.message)] for w in caught])


def parameters(function):
    return [[p.name, p.kind.name, p.default] for p in inspect.signature(function).parameters.values()]


rec.put("signature/function", parameters(api.seed_everything))
rec.put("signature/fabric_method", parameters(api.Fabric.seed_everything))

call("unset")  # no seed and none in the environment: 0, with a warning on rank 0
call("given", 11)
call("quiet", 12, verbose=False)
call("from_environment")  # the seed the last call put in the environment
call("string", "13")
call("whole_float", 14.0)
call("numpy_int", np.int64(15))
call("negative", -1)
call("too_big", 2**32)
call("not_a_number", "x")


class Draws(Dataset):
    """Each item: its index, the worker that loaded it, and one draw from torch, random and NumPy."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        worker = get_worker_info()
        drawn = [torch.rand(()).item(), random.random(), float(np.random.rand())]
        return torch.tensor([index, -1 if worker is None else worker.id, *drawn], dtype=torch.float64)


def drawn_in_workers(**kwargs):
    loader = fabric.setup_dataloaders(DataLoader(Draws(), batch_size=2, num_workers=2, **kwargs))
    return [row for batch in loader for row in batch.tolist()]


def user_init(worker_id):
    torch.manual_seed(100 + worker_id)
    random.seed(200 + worker_id)
    np.random.seed(300 + worker_id)


api.seed_everything(5, workers=True, verbose=False)
rec.put("workers/seeded", drawn_in_workers())
api.seed_everything(5, workers=True, verbose=False)
rec.put("workers/user_init_kept", drawn_in_workers(worker_init_fn=user_init))
api.seed_everything(5, workers=False, verbose=False)
rec.put("workers/not_seeded", drawn_in_workers())
api.Fabric.seed_everything(6, verbose=False)  # Fabric's method seeds workers by default
rec.put("workers/fabric_default", drawn_in_workers())
rec.write()
