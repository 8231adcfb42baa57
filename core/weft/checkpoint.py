"""Checkpoint building blocks shared by strategies: atomic writes, safe reads, restoring state.

Every write goes to a temporary name in the target's folder and is moved into
place with ``os.replace`` only once complete, so a crash never leaves a file
at the target path that looks whole but is not.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import pickle
import secrets
import shutil
import tempfile
import zipfile
from typing import Any, Callable

import torch

from weft.errors import CheckpointError, CheckpointNotFoundError

#: Key under which :meth:`Fabric.save` stores the precision plugin's state.
PRECISION_KEY = "weft_precision"

_OPT_OUT = (
    "This checkpoint holds objects other than tensors and plain containers, so it was refused by "
    "torch.load(weights_only=True). If you trust the file, load it with fabric.load(path, state, "
    "weights_only=False) (or weft.checkpoint.load_file(path, weights_only=False))."
)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file(folder: str, prefix: str, suffix: str) -> str:
    """Create an empty file with a fresh name in ``folder`` and the mode any new file gets.

    ``tempfile.mkstemp`` would make it 0600; a checkpoint is an ordinary file, so it gets
    0666 less the umask (0644 usually), as ``torch.save(obj, path)`` and Lightning give it.
    """
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return name
    raise FileExistsError(f"could not create a temporary file in {folder!r}")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move ``tmp_path`` onto ``path`` atomically.

    The file gets the usual mode of a new file (0666 less the umask).

    :param path: the final file path; its folder is created if missing.
    :param write: writes the complete file to the temporary path it is given.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _new_file(folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, written aside and renamed into place."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def commit_folder(tmp_folder: str, path: str) -> None:
    """Move a fully written folder onto ``path``, replacing an older one.

    The old folder, if any, is first renamed aside and deleted after the new one
    is in place, so at every moment ``path`` is either the old or the new whole checkpoint
    (between the two renames it is briefly absent, never partial).
    """
    _fsync_dir(tmp_folder)
    old = None
    if os.path.lexists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old.", dir=os.path.dirname(os.path.abspath(path)))
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp_folder, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if os.path.isdir(old) else os.remove(old)


def to_state_dicts(state: dict[str, Any], filter: dict[str, Callable[[str, Any], bool]] | None = None) -> dict[str, Any]:
    """Replace every object that has ``state_dict()`` (modules, optimizers, schedulers...) by its state dict.

    :param state: the user's state; values without ``state_dict`` are kept as they are.
    :param filter: optional ``{key: keep(name, value)}`` applied to that key's state dict.
    """
    converted: dict[str, Any] = {}
    for key, value in state.items():
        if hasattr(value, "state_dict") and callable(value.state_dict):
            value = value.state_dict()
            if filter and key in filter:
                value = {k: v for k, v in value.items() if filter[key](k, v)}
        converted[key] = value
    return converted


def load_file(path: str | os.PathLike, weights_only: bool = True, map_location: Any = "cpu") -> Any:
    """``torch.load`` with errors that say what is wrong with the file and what to do."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"No checkpoint at {path!r}")
    if os.path.isdir(path):
        raise CheckpointError(
            f"{path!r} is a folder; this strategy reads single-file checkpoints. A sharded checkpoint "
            "loads with a sharded strategy (e.g. strategy='fsdp'), or turn it into one file with "
            "`weft consolidate`."
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        if weights_only and "weights_only" in str(exc) and zipfile.is_zipfile(path):
            raise CheckpointError(f"Refused to load {path!r}: {_OPT_OUT} Details: {str(exc).splitlines()[0]}") from exc
        if weights_only and "weights_only" in str(exc):
            # Not torch.save's zip format: torch tried the legacy format, which random bytes also fail.
            raise CheckpointError(
                f"{path!r} is not a readable checkpoint: it is not in torch.save's format (corrupt, truncated, or "
                "not a checkpoint). If it is an old-format torch.save file you trust, pass weights_only=False."
            ) from exc
        raise CheckpointError(f"{path!r} is not a readable checkpoint (corrupt or truncated): {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - damaged bytes fail in many ways inside the unpickler
        raise CheckpointError(
            f"{path!r} is not a readable checkpoint (corrupt or truncated): {type(exc).__name__}: {exc}"
        ) from exc


def restore(checkpoint: dict[str, Any], state: dict[str, Any] | None, strict: bool = True) -> dict[str, Any]:
    """Load ``checkpoint`` into ``state`` in place; return what was not restored.

    Objects in ``state`` with ``load_state_dict`` receive their entry; other
    entries are replaced by the checkpoint's value. With ``strict``, a key of
    ``state`` missing from the checkpoint is an error.
    """
    if not isinstance(checkpoint, dict) and isinstance(state, dict):
        raise CheckpointError(f"Expected a checkpoint holding a dict, found {type(checkpoint).__name__}")
    if state is None:
        return dict(checkpoint)
    if not isinstance(state, dict):  # a single module or optimizer: Fabric.load_raw
        return restore({"raw": checkpoint}, {"raw": state}, strict)
    missing = [k for k in state if k not in checkpoint]
    if strict and missing:
        raise CheckpointError(
            f"The checkpoint has no entry for {missing} (it has {sorted(checkpoint)}). "
            "Pass strict=False to restore only what is there."
        )
    for key, value in state.items():
        if key not in checkpoint:
            continue
        saved = checkpoint[key]
        if isinstance(value, torch.nn.Module):
            try:
                value.load_state_dict(saved, strict=strict)
            except RuntimeError as exc:
                raise CheckpointError(
                    f"The checkpoint's {key!r} does not match the model being restored: {exc}"
                ) from exc
        elif hasattr(value, "load_state_dict") and callable(value.load_state_dict):
            try:
                value.load_state_dict(saved)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(f"Could not restore {key!r} from the checkpoint: {exc}") from exc
        else:
            state[key] = saved
    return {k: v for k, v in checkpoint.items() if k not in state}


def latest_checkpoint(folder: str | os.PathLike, pattern: str = "*") -> str | None:
    """The newest complete checkpoint (file or sharded folder) in ``folder``, or ``None``.

    Saves are written under hidden names (starting with ``.``) and renamed into place only
    once complete, so every visible entry is a complete checkpoint and hidden ones are
    skipped. One exception: when an overwrite of a folder was interrupted after the old
    folder was moved aside (``.NAME.old.*``) but before the new one took its place, the
    moved-aside folder stands in for the missing ``NAME``.

    :param folder: where the checkpoints are.
    :param pattern: a glob the checkpoint names match, e.g. ``"step-*.ckpt"``.
    :returns: the path of the most recently written one (ties broken by name, numbers
        compared as numbers).

    .. versionadded:: 0.1
    """
    import fnmatch
    import re

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return None
    names = os.listdir(folder)
    visible = {n for n in names if not n.startswith(".")}
    candidates = {n: n for n in visible if fnmatch.fnmatch(n, pattern)}
    for name in names:
        match = re.fullmatch(r"\.(.+)\.old\.[^.]+", name)
        if match and match.group(1) not in visible and fnmatch.fnmatch(match.group(1), pattern):
            candidates.setdefault(match.group(1), name)

    ranked = []
    for shown, actual in candidates.items():
        try:
            written = os.stat(os.path.join(folder, actual)).st_mtime_ns
        except FileNotFoundError:  # removed since listed (e.g. rotated away by a running job)
            continue
        natural = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", shown)]
        ranked.append((written, natural, actual))
    return os.path.join(folder, max(ranked)[2]) if ranked else None
