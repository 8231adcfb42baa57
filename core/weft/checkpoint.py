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

from weft.checksums import verify_torch_file
from weft.errors import (
    CheckpointError,
    CheckpointKeyError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointStructureError,
    CheckpointTypeError,
    CheckpointUnreadableError,
)
from weft.restorable import check_restorable  # noqa: F401 - part of this module's API (Fabric.save calls it)

#: Key under which :meth:`Fabric.save` stores the precision plugin's state.
PRECISION_KEY = "weft_precision"
#: Key under which :meth:`Fabric.save` stores the strategy's state (``weft_strategy_state_dict``).
STRATEGY_KEY = "weft_strategy"

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


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], needed_bytes: Callable[[], int] | None = None) -> None:
    """Call ``write(tmp_path)`` then move ``tmp_path`` onto ``path`` atomically.

    The file gets the usual mode of a new file (0666 less the umask). When the write fails,
    the temporary file is removed and whatever was at ``path`` stays as it was.

    :param path: the final file path; its folder is created if missing.
    :param write: writes the complete file to the temporary path it is given.
    :param needed_bytes: how many bytes the file takes, roughly (asked only when the write
        fails, to tell a full disk from other failures when the error does not say).
    :raises CheckpointError: when the disk is full (or the quota exceeded).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        tmp = _new_file(folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        full = disk_full_error(exc, path, folder, None, needed_bytes)
        if full is not None:
            raise full from exc
        raise
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        full = disk_full_error(exc, path, folder, tmp, needed_bytes) if isinstance(exc, Exception) else None
        try:
            os.remove(tmp)
        except OSError:
            pass
        if full is not None:
            raise full from exc
        raise
    _fsync_dir(folder)


def disk_full_error(
    exc: BaseException, path: str, folder: str, tmp: str | None, needed_bytes: Callable[[], int] | None
) -> CheckpointError | None:
    """A "disk is full" :class:`CheckpointError` when that is why writing ``path`` failed, else ``None``.

    An ``OSError`` says so itself (ENOSPC, EDQUOT); ``torch.save`` to a path reports only a
    failed write, so then the free space left in ``folder`` decides: too little for the rest.
    """
    from weft.sharded_integrity import disk_full_cause

    needed = None
    if disk_full_cause(exc) is None:
        try:
            stats = os.statvfs(folder)
            free = stats.f_bavail * stats.f_frsize
            written = os.path.getsize(tmp) if tmp and os.path.exists(tmp) else 0
            needed = needed_bytes() if needed_bytes is not None else None
        except (OSError, AttributeError):
            return None
        if needed is None or free >= max(needed - written, 1):
            return None  # there was room: some other failure
    else:
        try:
            needed = needed_bytes() if needed_bytes is not None else None
        except Exception:  # noqa: BLE001 - the figure is a courtesy
            needed = None
    size = f" (it needs about {needed:,} bytes)" if needed else ""
    return CheckpointError(
        f"Could not save {path!r}: the disk is full (no space left on device){size}. Free some space or save "
        "elsewhere; the previous checkpoint at that path, if any, is untouched and no temporary file was left."
    )


def tensor_bytes(obj: Any) -> int:
    """Bytes of tensor data in ``obj`` (walking dicts, lists and tuples; shared storages once)."""
    seen: set[int] = set()
    total, stack = 0, [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            try:
                storage = item.untyped_storage()
                if storage.data_ptr() not in seen or storage.data_ptr() == 0:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
            except (RuntimeError, NotImplementedError):  # tensor subclasses without one storage
                total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, written aside and renamed into place.

    :raises CheckpointError: when the disk is full; the previous file at ``path`` stays.
    """
    atomic_write(path, lambda tmp: torch.save(obj, tmp), needed_bytes=lambda: tensor_bytes(obj) + 4096)


def commit_folder(tmp_folder: str, path: str) -> None:
    """Move a fully written folder onto ``path``, replacing an older one.

    The old folder, if any, is first renamed aside and deleted after the new one
    is in place, so at every moment ``path`` is either the old or the new whole checkpoint
    (between the two renames it is briefly absent, never partial). When another save
    commits onto the same path at the same moment, the two retry until one is in place
    and the other replaced it: the last to commit wins, whole.
    """
    import errno

    _fsync_dir(tmp_folder)
    parent = os.path.dirname(os.path.abspath(path))
    for attempt in range(1000):
        old = None
        if os.path.lexists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old.", dir=parent)
            os.rmdir(old)
            try:
                os.replace(path, old)
            except FileNotFoundError:  # another save moved it aside first
                old = None
        try:
            os.replace(tmp_folder, path)
        except OSError as exc:
            # Another save put its folder at ``path`` between our two renames: move that one aside too.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == 999:
                raise
            continue
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True) if os.path.isdir(old) else os.remove(old)
        break
    _fsync_dir(parent)


def checked_dcp_writer(path: str, extra_files: tuple[str, ...] = (), on_finish: Callable[[], None] | None = None) -> Any:
    """A DCP storage writer that records a checksum per item (see :mod:`weft.sharded_integrity`)."""
    from weft.sharded_integrity import checked_writer

    return checked_writer(path, extra_files, on_finish)


def checked_dcp_reader(path: str) -> Any:
    """A DCP storage reader that verifies the checksums of what it reads (see :mod:`weft.sharded_integrity`)."""
    from weft.sharded_integrity import checked_reader

    return checked_reader(path)


def sharded_error(exc: BaseException, path: str, action: str) -> CheckpointError:
    """DCP's failure ``exc`` (a ``CheckpointException`` is not an ``Exception``) as a :class:`CheckpointError`."""
    from weft.sharded_integrity import as_checkpoint_error

    return as_checkpoint_error(exc, path, action)


def is_dcp_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is DCP's ``CheckpointException`` (which ``except Exception`` misses)."""
    from weft.sharded_integrity import is_dcp_failure as check

    return check(exc)


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
    """``torch.load`` with errors that say what is wrong with the file and what to do.

    Every record's CRC-32 (which ``torch.save`` stores and ``torch.load`` ignores) is checked
    first, so damaged tensor data is a :class:`CheckpointError` naming the entry, not wrong numbers.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"No checkpoint at {path!r}")
    if os.path.isdir(path):
        raise CheckpointError(
            f"{path!r} is a folder; this strategy reads single-file checkpoints. A sharded checkpoint "
            "loads with a sharded strategy (e.g. strategy='fsdp'), or turn it into one file with "
            "`weft consolidate`."
        )
    verify_torch_file(path)  # torch.load never checks the CRC-32 each record carries
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        if weights_only and "weights_only" in str(exc) and zipfile.is_zipfile(path):
            raise CheckpointError(f"Refused to load {path!r}: {_OPT_OUT} Details: {str(exc).splitlines()[0]}") from exc
        if weights_only and "weights_only" in str(exc):
            # Not torch.save's zip format: torch tried the legacy format, which random bytes also fail.
            raise CheckpointUnreadableError(
                f"{path!r} is not a readable checkpoint: it is not in torch.save's format (corrupt, truncated, or "
                "not a checkpoint). If it is an old-format torch.save file you trust, pass weights_only=False."
            ) from exc
        raise CheckpointUnreadableError(f"{path!r} is not a readable checkpoint (corrupt or truncated): {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - damaged bytes fail in many ways inside the unpickler
        raise CheckpointUnreadableError(
            f"{path!r} is not a readable checkpoint (corrupt or truncated): {type(exc).__name__}: {exc}"
        ) from exc


def restore(checkpoint: dict[str, Any], state: dict[str, Any] | None, strict: bool = True) -> dict[str, Any]:
    """Load ``checkpoint`` into ``state`` in place; return what was not restored.

    Objects in ``state`` with ``load_state_dict`` receive their entry; other
    entries are replaced by the checkpoint's value. With ``strict``, a key of
    ``state`` missing from the checkpoint is an error.

    Each error is a :class:`CheckpointError` that is also the builtin type torch (and Lightning)
    raise for the same problem: ``KeyError`` for a missing entry, ``RuntimeError`` for a model
    that does not fit, ``TypeError`` for an entry of the wrong type.
    """
    if not isinstance(checkpoint, dict) and isinstance(state, dict):
        raise CheckpointStructureError(
            f"Expected a checkpoint holding a dict of entries, found {type(checkpoint).__name__}. "
            "fabric.load restores from what fabric.save writes; read other files with torch.load, or "
            "fabric.load_raw(path, model) for a bare state dict."
        )
    if state is None:
        return dict(checkpoint)
    if not isinstance(state, dict):  # a single module or optimizer: Fabric.load_raw
        return restore({"raw": checkpoint}, {"raw": state}, strict)
    missing = [k for k in state if k not in checkpoint]
    if strict and missing:
        raise CheckpointKeyError(
            f"The checkpoint has no entry for {missing} (it has {_listed(checkpoint)}). "
            f"{_hint_for_foreign(checkpoint)}Pass strict=False to restore only what is there."
        )
    for key, value in state.items():
        if key not in checkpoint:
            continue
        saved = checkpoint[key]
        if isinstance(value, torch.nn.Module):
            try:
                value.load_state_dict(saved, strict=strict)
            except TypeError as exc:
                raise CheckpointTypeError(_wrong_type(key, saved, "a model's state dict", exc)) from exc
            except RuntimeError as exc:
                raise CheckpointMismatchError(_mismatch(key, saved, exc)) from exc
        elif hasattr(value, "load_state_dict") and callable(value.load_state_dict):
            try:
                value.load_state_dict(saved)
            except TypeError as exc:
                raise CheckpointTypeError(_wrong_type(key, saved, f"{type(value).__name__}'s state dict", exc)) from exc
            except KeyError as exc:
                raise CheckpointKeyError(f"Could not restore {key!r} from the checkpoint: its entry has no key {exc}.") from exc
            except (ValueError, RuntimeError) as exc:
                raise CheckpointError(f"Could not restore {key!r} from the checkpoint: {exc}") from exc
        else:
            state[key] = saved
    return {k: v for k, v in checkpoint.items() if k not in state}


def _listed(checkpoint: dict[str, Any]) -> str:
    keys = sorted(map(str, checkpoint))
    return str(keys) if len(keys) <= 12 else f"{keys[:12]}... ({len(keys)} entries)"


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _hint_for_foreign(checkpoint: dict[str, Any]) -> str:
    """What the file probably is, when it was not written by fabric.save."""
    if "state_dict" in checkpoint and "pytorch-lightning_version" in checkpoint or "state_dict" in checkpoint and "epoch" in checkpoint:
        return (
            "It looks like a Lightning Trainer checkpoint: its model weights are under 'state_dict' "
            "(load with strict=False and read the returned 'state_dict', or use fabric.load(path, {'state_dict': model})). "
        )
    if _is_state_dict(checkpoint):
        return "It holds a bare state dict (torch.save(model.state_dict())): load it with fabric.load_raw(path, model). "
    return ""


def _wrong_type(key: str, saved: Any, expected: str, exc: BaseException) -> str:
    return f"Could not restore {key!r}: the checkpoint holds a {type(saved).__name__} there, not {expected} ({exc})."


def _mismatch(key: str, saved: Any, exc: BaseException) -> str:
    what = "The file" if key == "raw" else f"The checkpoint's {key!r}"
    message = f"{what} does not match the model being restored: {exc}"
    if key == "raw" and isinstance(saved, dict) and not _is_state_dict(saved) and any(isinstance(v, dict) for v in saved.values()):
        entries = [k for k, v in saved.items() if isinstance(v, dict)]
        message += (
            f"\nThe file holds entries {entries} (a fabric.save checkpoint), not one state dict: restore it with "
            f"fabric.load(path, {{{entries[0]!r}: model}})."
        )
    return message


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
