"""Reading sharded checkpoint folders, and ``weft consolidate``: turn one into a single file.

A sharded checkpoint folder, as sharding strategies write it, holds:

- the files of :mod:`torch.distributed.checkpoint` (DCP): ``.metadata`` plus one or
  more ``*.distcp`` files, with the tensor state (models, optimizers) under the
  top-level keys the user passed to :meth:`Fabric.save`;
- :data:`META_FILE`, written by rank 0: a ``torch.save`` of
  ``{"format": FORMAT, "version": 1, "world_size": N, "tensor_keys": [...],
  "values": {...}}``, where ``values`` holds the rest of the state (step counters,
  scheduler and data-loader state dicts, the precision's state).

- :data:`weft.sharded_integrity.MANIFEST`: a CRC-32 per stored item, verified on every read.

Consolidating merges the two into the dict a ``"full"`` save writes, so
``torch.load(output)`` gives the same thing on a machine without weft. Only torch's
own DCP reader is used here: no strategy plugin is needed.

Non-tensor entries stored inside DCP are decoded with ``torch.load(weights_only=True)``
unless the caller opts out, like every other load in weft.

.. versionadded:: 0.1
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import warnings
from typing import Any

#: Name of the file in a sharded checkpoint folder holding its non-tensor state.
META_FILE = "weft_meta.pt"
#: The ``format`` tag of :data:`META_FILE`.
FORMAT = "weft-sharded"

_UNSAFE = (
    "The sharded checkpoint {path!r} holds objects other than tensors and plain containers, so it "
    "was refused under weights_only=True. If you trust it, load with weights_only=False "
    "(fabric.load(..., weights_only=False), or `weft consolidate --unsafe-load`)."
)


def is_sharded_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by DCP (it has DCP's ``.metadata`` file)."""
    return os.path.isfile(os.path.join(os.fspath(path), ".metadata"))


def missing_metadata(path: str | os.PathLike) -> None:
    """Raise when the folder ``path`` holds a sharded checkpoint's files but lost its ``.metadata``."""
    from weft.errors import CheckpointError
    from weft.sharded_integrity import MANIFEST

    path = os.fspath(path)
    try:
        names = os.listdir(path)
    except OSError:
        return
    if any(n.endswith(".distcp") or n in (META_FILE, MANIFEST) for n in names):
        raise CheckpointError(
            f"The sharded checkpoint {path!r} is damaged: its file '.metadata' is missing (it still has "
            f"{', '.join(sorted(names)[:5])}). Restore the folder from another copy, or resume from an older checkpoint."
        )


def weights_only_load_planner(weights_only: bool = True, path: str = "", empty: bool = False, **kwargs: Any) -> Any:
    """A DCP load planner whose non-tensor entries obey ``weights_only``.

    DCP's default planner decodes such entries with ``torch.load(weights_only=False)``.
    This one first decodes each under the restricted unpickler and refuses the
    checkpoint when that fails; an entry that passes is then handed to DCP unchanged.

    :param weights_only: ``False`` restores DCP's unrestricted behaviour.
    :param path: the checkpoint, for error messages.
    :param empty: build the whole state dict from the checkpoint's metadata
        (for loading without a model, as consolidation does).
    :param kwargs: passed to the planner (e.g. ``allow_partial_load``).
    """
    import torch
    from torch.distributed.checkpoint import DefaultLoadPlanner

    base: type = DefaultLoadPlanner
    if empty:
        from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner

        base = _EmptyStateDictLoadPlanner

    from weft.errors import CheckpointError

    class _Planner(base):  # type: ignore[misc, valid-type]
        def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
            if weights_only:
                start = value.tell()
                try:
                    torch.load(value, weights_only=True)
                except pickle.UnpicklingError as exc:
                    raise CheckpointError(_UNSAFE.format(path=path) + f" Entry: {read_item.dest_index.fqn}") from exc
                value.seek(start)
            super().load_bytes(read_item, value)

    return _Planner(**kwargs)


def read_sharded(path: str | os.PathLike, weights_only: bool = True) -> dict[str, Any]:
    """Read a whole sharded checkpoint into one dict of full CPU tensors, in this process alone.

    :param path: the checkpoint folder.
    :param weights_only: decode non-tensor state with the restricted unpickler.
    :returns: the dict a ``"full"`` save of the same state holds.
    """
    import torch.distributed.checkpoint as dcp

    from weft.checkpoint import load_file
    from weft.errors import CheckpointError, CheckpointNotFoundError
    from weft.sharded_integrity import as_checkpoint_error, checked_reader, is_dcp_failure

    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"No checkpoint at {path!r}")
    if not is_sharded_checkpoint(path):
        missing_metadata(path)
        raise CheckpointError(
            f"{path!r} is not a sharded checkpoint folder (it has no DCP .metadata file); "
            "a single-file checkpoint needs no consolidation."
        )
    planner = weights_only_load_planner(weights_only, path=path, empty=True)
    try:
        # dcp.load fills a copy of the dict it is given; the planner keeps the filled one.
        with warnings.catch_warnings():  # reading in one process is the point here, not a mistake
            warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
            # The checked reader verifies every item against the folder's checksum manifest.
            dcp.load({}, checkpoint_id=path, storage_reader=checked_reader(path), planner=planner, no_dist=True)
        state: dict[str, Any] = planner.original_state_dict
    except CheckpointError:
        raise
    except BaseException as exc:  # DCP's CheckpointException is a BaseException, not an Exception
        if isinstance(exc, Exception) or is_dcp_failure(exc):
            raise as_checkpoint_error(exc, path, "read") from exc
        raise
    meta_path = os.path.join(path, META_FILE)
    if os.path.exists(meta_path):
        meta = load_file(meta_path, weights_only=weights_only)
        for key, value in meta.get("values", {}).items():
            state[key] = value
    return state


def consolidate(checkpoint_dir: str | os.PathLike, output: str | os.PathLike, weights_only: bool = True) -> None:
    """Write the sharded checkpoint ``checkpoint_dir`` as one ``torch.save`` file at ``output`` (atomically).

    :param checkpoint_dir: the folder written by a sharded save.
    :param output: the file to write.
    :param weights_only: decode non-tensor state with the restricted unpickler.
    """
    from weft.checkpoint import atomic_torch_save

    atomic_torch_save(read_sharded(checkpoint_dir, weights_only=weights_only), output)


def _run(args: argparse.Namespace) -> int:
    from weft.errors import ConfigurationError

    output = args.output_positional
    if args.output is not None:
        if output is not None and os.path.abspath(output) != os.path.abspath(args.output):
            raise ConfigurationError(f"two outputs given ({output!r} and --output {args.output!r}); pass one")
        output = args.output
    if output is None:
        output = os.path.normpath(args.checkpoint_dir) + ".consolidated.pt"
    if os.path.isdir(output):
        raise ConfigurationError(f"the output {output!r} is a folder; pass a file path")
    consolidate(args.checkpoint_dir, output, weights_only=not args.unsafe_load)
    print(f"wrote {output}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "consolidate",
        help="turn a sharded checkpoint folder into one torch.save file",
        description="Merge a sharded checkpoint folder (written by e.g. strategy='fsdp') into one file "
        "that plain torch.load reads, without weft or the strategy plugin.",
    )
    p.add_argument("checkpoint_dir", help="the sharded checkpoint folder")
    p.add_argument("output_positional", nargs="?", metavar="OUTPUT", help="the file to write")
    p.add_argument("--output", "-o", default=None, help="the file to write (same as OUTPUT)")
    p.add_argument(
        "--unsafe-load",
        action="store_true",
        help="decode non-tensor state with the unrestricted unpickler (only for checkpoints you trust)",
    )
    p.set_defaults(func=_run)
