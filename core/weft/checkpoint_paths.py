"""Checks of checkpoint paths for ``fabric.save``/``fabric.load``, and the weft error for a failed write."""

from __future__ import annotations

import os
from typing import Any

from weft.errors import (
    CheckpointEmptyError,
    CheckpointPathIsDirectoryError,
    CheckpointPathIsFileError,
    CheckpointPathNotDirectoryError,
    CheckpointPathTypeError,
    CheckpointPermissionError,
    CheckpointWriteError,
)


_WRITE_ERRORS = (
    (FileExistsError, CheckpointPathIsFileError),
    (NotADirectoryError, CheckpointPathNotDirectoryError),
    (IsADirectoryError, CheckpointPathIsDirectoryError),
    (PermissionError, CheckpointPermissionError),
)


def _check_path(path: Any, what: str) -> None:
    """A checkpoint path must be a str or ``os.PathLike`` (``None`` is refused as Lightning does:
    a ``FileNotFoundError``, here also a ``TypeError``)."""
    if isinstance(path, (str, os.PathLike)) and not isinstance(path, bytes):
        return
    raise CheckpointPathTypeError(
        f"{what}(path={path!r:.60}): the checkpoint path must be a str or os.PathLike (e.g. 'checkpoints/last.ckpt'), "
        f"got {type(path).__name__}"
    )


def _check_not_empty(path: str | os.PathLike) -> None:
    """An empty file is no checkpoint: say so, rather than torch's bare ``EOFError``."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise CheckpointEmptyError(
            f"{os.fspath(path)!r} is empty (0 bytes), not a checkpoint: it was created but never written (fabric.save "
            "writes aside and renames, so it did not come from there). Load another checkpoint."
        )


def _write_error(exc: OSError, path: Any) -> CheckpointWriteError:
    """The weft error for an ``OSError`` met while writing the checkpoint at ``path``."""
    cls = next((weft for builtin, weft in _WRITE_ERRORS if isinstance(exc, builtin)), CheckpointWriteError)
    if isinstance(exc, FileExistsError | NotADirectoryError):
        cause = "a folder on the way to it is a file"
    elif isinstance(exc, IsADirectoryError):
        cause = "it is a folder, and this strategy writes a single file; save to a file name in it"
    elif isinstance(exc, PermissionError):
        cause = "this process may not write there"
    else:
        cause = "the file system refused"
    return cls(f"Cannot write the checkpoint {os.fspath(path)!r}: {cause} ({exc}). Choose another path.")
