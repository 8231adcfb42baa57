"""Seed every random number generator a training script touches, and DataLoader workers.

The global seed travels to child processes (and to the samplers weft builds) in the
``WEFT_GLOBAL_SEED`` environment variable; ``WEFT_SEED_WORKERS=1`` asks
``setup_dataloaders`` to give loaders a ``worker_init_fn`` (:func:`seed_worker`).
Both play the roles of Lightning's ``PL_GLOBAL_SEED`` and ``PL_SEED_WORKERS``.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import warnings
from typing import Any

SEED_ENV = "WEFT_GLOBAL_SEED"
SEED_WORKERS_ENV = "WEFT_SEED_WORKERS"
MAX_SEED = 2**32 - 1  # NumPy's global generator takes seeds in [0, 2**32 - 1]

_log = logging.getLogger(__name__)
if _log.level == logging.NOTSET:
    # "Seed set to N" is an INFO message users expect to see (Lightning shows it too).
    _log.setLevel(logging.INFO)

_MASK64 = (1 << 64) - 1


def seed_everything(seed: Any = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed Python's ``random``, NumPy (when installed) and torch (CPU and all CUDA devices).

    :param seed: the seed, an int in ``[0, 2**32 - 1]`` (or a value ``int()`` turns into one
        without losing anything, such as ``"7"``). ``None`` reads ``WEFT_GLOBAL_SEED``, or uses 0
        with a warning when it is unset.
    :param workers: give DataLoaders set up afterwards a ``worker_init_fn`` that seeds each
        worker from (seed, global rank, worker id), so workers draw different numbers on every
        rank and the same numbers in every run. A loader's own ``worker_init_fn`` is kept.
    :param verbose: report the seed ("[rank: N] Seed set to S") and warn when none was found.
    :returns: the seed used.

    .. versionadded:: 0.1
    """
    from weft.errors import ConfigurationError

    if seed is None:
        found = os.environ.get(SEED_ENV)
        if found is None:
            seed = 0
            if verbose and _rank() in (None, 0):
                warnings.warn(f"No seed found, seed set to {seed}", UserWarning, stacklevel=2)
        else:
            seed = _env_seed(found)
    else:
        seed = _as_seed(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ConfigurationError(f"seed must be in [0, 2**32 - 1], got {seed}")
    if verbose:
        _announce(f"Seed set to {seed}")

    import torch

    os.environ[SEED_ENV] = str(seed)
    random.seed(seed)
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ[SEED_WORKERS_ENV] = str(int(bool(workers)))
    return seed


def global_seed() -> int:
    """The seed ``seed_everything`` set (``WEFT_GLOBAL_SEED``), or 0 when it was never called."""
    found = os.environ.get(SEED_ENV)
    return 0 if found is None else _env_seed(found)


def seed_workers_requested() -> bool:
    """Whether the last ``seed_everything`` call asked for seeded DataLoader workers."""
    return os.environ.get(SEED_WORKERS_ENV, "0").strip() not in ("", "0")


def seed_worker(worker_id: int, rank: int = 0) -> None:
    """A DataLoader ``worker_init_fn``: seed this worker's generators from (base seed, worker id, rank).

    Inside a worker, torch has seeded itself with ``base_seed + worker_id``, where the base
    seed is drawn from the main process's generator when the epoch starts (so it follows
    ``seed_everything``). Mixing in the rank makes workers of different ranks differ. The
    numbers are those of Lightning's ``pl_worker_init_function``, so a script draws the same
    values in its workers under either.
    """
    import torch

    base_seed = torch.initial_seed() - worker_id
    seeds = _seed_sequence(base_seed, worker_id, rank, count=4)
    torch.manual_seed(seeds[0])
    random.seed((seeds[1] << 32) | seeds[2])
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(numpy.random.SeedSequence([base_seed, worker_id, rank]).generate_state(4))


def _seed_sequence(base_seed: int, worker_id: int, rank: int, count: int) -> list[int]:
    """``count`` 64-bit seeds from one number packing the three inputs.

    The number is first scrambled with the MurmurHash3 64-bit finaliser (so small seeds
    still set every bit), then stepped through Knuth's MMIX linear congruential generator.
    """
    x = (base_seed << 32) | (worker_id << 16) | rank  # wider than 64 bits: the first shift folds the top in
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK64
    x ^= x >> 33
    out = []
    for _ in range(count):
        x = (x * 6364136223846793005 + 1) & _MASK64
        out.append(x)
    return out


def _as_seed(seed: Any) -> int:
    from weft.errors import ConfigurationError

    # bool is an int, but a seed of True is almost certainly an argument in the wrong place.
    if isinstance(seed, int) and not isinstance(seed, bool):
        return int(seed)
    if not isinstance(seed, bool):
        try:
            as_int = int(seed)
        except (TypeError, ValueError):
            pass
        else:
            # Only conversions that lose nothing: 7.0 and "7" are 7, 7.5 is refused rather than truncated.
            if as_int == seed or (isinstance(seed, str) and seed.strip().lstrip("+-").isdigit()):
                return as_int
    raise ConfigurationError(f"seed_everything() takes an int in [0, 2**32 - 1], got {seed!r}")


def _env_seed(text: str) -> int:
    from weft.errors import ConfigurationError

    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(
            f"Invalid seed in the environment variable {SEED_ENV}={text!r}: set it to an int in [0, 2**32 - 1] "
            "or unset it"
        ) from None


def _rank() -> int | None:
    """This process's rank, for messages: the process group's if one is up, else the launcher's variables."""
    torch = sys.modules.get("torch")
    if torch is not None:
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    for name in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def _announce(message: str) -> None:
    """Log at INFO; when logging was never configured, print to stderr so the message is seen."""
    rank = _rank()
    if rank is not None:
        message = f"[rank: {rank}] {message}"
    if _log.hasHandlers():
        _log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy
