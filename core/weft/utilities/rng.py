"""Capture and restore every random number generator a training run draws from.

Exact resume needs the generators to continue where they stopped: Python's
``random``, NumPy's global generator, torch's CPU generator and one generator per
CUDA device. Their states differ per process, so a checkpoint stores one entry
per rank. Put an :class:`RNGState` in the state you save::

    state = {"model": model, "optimizer": optimizer, "loader": loader, "rng": weft.RNGState()}
    fabric.save("ckpt.pt", state)   # every rank calls save: the states are gathered to the writer
    ...
    fabric.load("ckpt.pt", state)   # each rank restores its own generators

Everything is stored as tensors and plain Python values, so checkpoints holding
RNG states still load with ``torch.load(weights_only=True)``.

.. versionadded:: 0.1
"""

from __future__ import annotations

import io
import random
from typing import TYPE_CHECKING, Any

import torch

from weft.errors import CheckpointError

if TYPE_CHECKING:
    from weft.fabric import Fabric

#: Format version of a saved RNG entry, so a later layout can still read this one.
_FORMAT = 1


def capture_rng_state() -> dict[str, Any]:
    """The states of this process's generators: ``python``, ``numpy`` (if installed), ``torch``, ``cuda``.

    :returns: a dict of tensors and plain values (safe for ``weights_only=True`` loading).
    """
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    numpy_state = _numpy_state()
    if numpy_state is not None:
        state["numpy"] = numpy_state
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # Only when CUDA is already in use: querying it otherwise would initialise it.
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set this process's generators from :func:`capture_rng_state`'s result.

    :param state: the captured states; generators it does not mention are left alone.
    """
    if "python" in state:
        python = state["python"]
        random.setstate((int(python["version"]), tuple(int(x) for x in python["internal"].tolist()), python["gauss"]))
    if "numpy" in state:
        _set_numpy_state(state["numpy"])
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        saved, here = len(state["cuda"]), torch.cuda.device_count()
        if saved != here:
            raise CheckpointError(
                f"The checkpoint holds RNG states of {saved} CUDA devices, this process sees {here}; "
                "restore on the same number of devices per process, or leave the 'rng' entry out of the state."
            )
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGState:
    """A checkpoint entry holding the generator states of every rank.

    :meth:`Fabric.save` gathers each rank's states to the process that writes
    (this is a collective: every rank calls ``save``, as sharded strategies
    require anyway). :meth:`Fabric.load` hands each rank its own entry back.
    Outside ``Fabric.save``, :meth:`state_dict` holds this process's states only.

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        self._gathered: list[dict[str, Any]] | None = None

    def gather(self, fabric: Fabric) -> dict[str, Any]:
        """Collect every rank's generator states (called by :meth:`Fabric.save` on every rank).

        :param fabric: the Fabric whose processes take part.
        :returns: the entry to save: ``{"format", "world_size", "ranks": [state of rank 0, ...]}``.
        """
        local = capture_rng_state()
        if fabric.world_size == 1:
            return _entry([local])
        payload = _to_bytes(local)
        sizes = fabric.all_gather(torch.tensor([payload.numel()], dtype=torch.int64))
        sizes = [int(s) for s in sizes.reshape(-1).tolist()]
        padded = torch.zeros(max(sizes), dtype=torch.uint8)
        padded[: payload.numel()] = payload
        gathered = fabric.all_gather(padded).cpu()
        return _entry([_from_bytes(gathered[rank, :size]) for rank, size in enumerate(sizes)])

    def state_dict(self) -> dict[str, Any]:
        """This process's generator states, as a one-rank entry (:meth:`gather` collects all ranks)."""
        return _entry([capture_rng_state()])

    def load_state_dict(self, state: dict[str, Any], rank: int | None = None, world_size: int | None = None) -> None:
        """Restore this rank's generators from a saved entry.

        :param state: an entry written by :meth:`Fabric.save` (or :meth:`state_dict`).
        :param rank: which rank's states to take; ``None`` uses the rank set by :meth:`Fabric.load`.
        :param world_size: the current number of processes, checked against the saved one.
        """
        if not isinstance(state, dict) or "ranks" not in state:
            raise CheckpointError(
                f"The checkpoint's RNG entry is not one written by weft.RNGState (got {type(state).__name__} "
                f"with keys {sorted(state) if isinstance(state, dict) else '-'})"
            )
        rank = self._rank if rank is None else rank
        world_size = self._world_size if world_size is None else world_size
        ranks = state["ranks"]
        if world_size is not None and len(ranks) != world_size:
            raise CheckpointError(
                f"The checkpoint holds RNG states of {len(ranks)} processes, this run has {world_size}; exact "
                "resume needs the same number of processes. To resume anyway, leave the 'rng' entry out of the "
                "state passed to fabric.load (the model and optimizer still restore)."
            )
        restore_rng_state(ranks[rank if rank < len(ranks) else 0])

    # Set by Fabric.load before restoring, so load_state_dict knows which entry is this process's.
    _rank: int = 0
    _world_size: int | None = None

    def _bind(self, fabric: Fabric) -> RNGState:
        self._rank, self._world_size = fabric.global_rank, fabric.world_size
        return self

    def __repr__(self) -> str:
        return "RNGState()"


def _entry(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"format": _FORMAT, "world_size": len(ranks), "ranks": ranks}


def _to_bytes(state: dict[str, Any]) -> torch.Tensor:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _from_bytes(data: torch.Tensor) -> dict[str, Any]:
    return torch.load(io.BytesIO(data.numpy().tobytes()), weights_only=True)


def _numpy_state() -> dict[str, Any] | None:
    try:
        import numpy
    except ImportError:
        return None
    name, keys, pos, has_gauss, cached = numpy.random.get_state()
    return {
        "name": str(name),
        "keys": torch.from_numpy(keys.astype("int64")),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    try:
        import numpy
    except ImportError:
        return
    keys = state["keys"].numpy().astype(numpy.uint32)
    numpy.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))
