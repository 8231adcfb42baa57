"""Checksums for sharded (DCP) checkpoint folders, and DCP's failures as weft errors.

:mod:`torch.distributed.checkpoint` stores no checksums: a flipped byte in a ``.distcp``
file loads as a wrong number. A folder written through :func:`checked_writer` also holds
:data:`MANIFEST`, a JSON file (which DCP ignores) listing a CRC-32 per stored item (the
byte range ``.metadata`` names for it), the CRC-32 of ``.metadata`` and every file the
folder must hold. Each rank computes the CRCs of the items it wrote, right after writing
them (the bytes are still in the page cache); they reach rank 0 with DCP's own write
results, and rank 0 writes the manifest before the folder is committed.
:func:`checked_reader` verifies, on every rank, the items that rank reads, so a mismatch
is raised on every rank (DCP gathers the failures) and nothing waits. Folders without a
manifest (older or foreign) load unverified.

.. versionadded:: 0.2
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import zlib
from typing import Any, Callable

from weft.errors import CheckpointError

#: The checksum manifest in a sharded checkpoint folder.
MANIFEST = ".weft-checksums.json"
_FORMAT = "weft-checksums"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _crcs_of_file(path: str, ranges: list[tuple[int, int]]) -> list[int]:
    """CRC-32 of each ``(offset, length)`` range of one file (-1 for a range past its end)."""
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return [zlib.crc32(b"") if length == 0 else -1 for _, length in ranges]
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
            return [zlib.crc32(view[o : o + n]) if o + n <= size else -1 for o, n in ranges]


def checked_writer(path: str, extra_files: tuple[str, ...] = (), on_finish: Callable[[], None] | None = None) -> Any:
    """A DCP ``FileSystemWriter`` for ``path`` that records a CRC-32 per item in :data:`MANIFEST`.

    :param path: the folder DCP writes.
    :param extra_files: files besides DCP's that ``on_finish`` adds and the folder must hold.
    :param on_finish: run on the coordinating rank after ``.metadata`` is written and before
        the manifest (e.g. to add those files); a failure there fails the save on every rank.
    """
    from torch.distributed.checkpoint import FileSystemWriter
    from torch.distributed.checkpoint.storage import WriteResult

    _Checked = _checked_write_result()

    class _Writer(FileSystemWriter):
        def write_data(self, plan: Any, planner: Any) -> Any:
            from torch.futures import Future

            results = super().write_data(plan, planner).wait()
            by_file: dict[str, list[Any]] = {}
            for result in results:
                by_file.setdefault(result.storage_data.relative_path, []).append(result)
            checked = []
            for name, group in by_file.items():
                info = [r.storage_data for r in group]
                crcs = _crcs_of_file(os.path.join(self.path, name), [(i.offset, i.length) for i in info])
                checked += [_Checked(r.index, r.size_in_bytes, r.storage_data, crc) for r, crc in zip(group, crcs)]
            future: Future = Future()
            future.set_result(checked)
            return future

        def finish(self, metadata: Any, results: list[list[Any]]) -> None:
            plain = [[WriteResult(r.index, r.size_in_bytes, r.storage_data) for r in rank] for rank in results]
            super().finish(metadata, plain)  # .metadata holds only DCP's own types: any DCP reads it
            if on_finish is not None:
                on_finish()
            items = [
                {"file": r.storage_data.relative_path, "offset": r.storage_data.offset, "length": r.storage_data.length,
                 "crc": r.crc, "fqn": r.index.fqn}
                for rank in results for r in rank
            ]
            folder = os.fspath(self.path)
            with open(os.path.join(folder, ".metadata"), "rb") as f:
                metadata_crc = zlib.crc32(f.read())
            files = sorted({i["file"] for i in items} | set(extra_files))
            manifest = {"format": _FORMAT, "version": 1, "algorithm": "crc32", "metadata_crc": metadata_crc,
                        "files": files, "items": items}
            from weft.checkpoint import atomic_write

            def write(tmp: str) -> None:
                with open(tmp, "w") as f:
                    json.dump(manifest, f)

            atomic_write(os.path.join(folder, MANIFEST), write)

    return _Writer(path)


def _checked_write_result() -> type:
    """DCP's ``WriteResult`` plus the item's CRC-32: defined once, at module level, so the
    results pickle by name on their way to rank 0 (torch is imported only when needed)."""
    if "_CheckedWriteResult" not in globals():
        from torch.distributed.checkpoint.storage import WriteResult

        @dataclasses.dataclass(frozen=True)
        class _CheckedWriteResult(WriteResult):  # type: ignore[no-redef]
            crc: int = 0

        _CheckedWriteResult.__qualname__ = "_CheckedWriteResult"
        globals()["_CheckedWriteResult"] = _CheckedWriteResult
    return globals()["_CheckedWriteResult"]


def read_manifest(path: str) -> dict[str, Any] | None:
    """The folder's checksum manifest, or ``None`` when it has none (older or foreign folders).

    Also checks that ``.metadata`` matches its recorded CRC and that every listed file exists.
    """
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.exists(manifest_path):
        return None
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("format") != _FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}")
        items = {(i["file"], int(i["offset"]), int(i["length"])): (int(i["crc"]), i["fqn"]) for i in manifest["items"]}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"The sharded checkpoint {path!r} is damaged: its checksum file {MANIFEST} is unreadable ({exc}).") from exc
    for name in manifest.get("files", []):
        if not os.path.exists(os.path.join(path, name)):
            raise CheckpointError(f"The sharded checkpoint {path!r} is damaged: its file {name!r} is missing.")
    metadata_path = os.path.join(path, ".metadata")
    if not os.path.exists(metadata_path):
        raise CheckpointError(f"The sharded checkpoint {path!r} is damaged: its file '.metadata' is missing.")
    with open(metadata_path, "rb") as f:
        if zlib.crc32(f.read()) != manifest.get("metadata_crc"):
            raise CheckpointError(
                f"The sharded checkpoint {path!r} is damaged: its file '.metadata' does not match its checksum."
            )
    return {"items": items}


def verify_items(path: str, manifest: dict[str, Any], infos: list[Any]) -> None:
    """Check the stored items ``infos`` (DCP ``_StorageInfo``: file, offset, length) against ``manifest``."""
    by_file: dict[str, list[Any]] = {}
    for info in infos:
        by_file.setdefault(info.relative_path, []).append(info)
    for name, group in by_file.items():
        file = os.path.join(path, name)
        if not os.path.exists(file):
            raise CheckpointError(f"The sharded checkpoint {path!r} is damaged: its file {name!r} is missing.")
        crcs = _crcs_of_file(file, [(i.offset, i.length) for i in group])
        for info, crc in zip(group, crcs):
            expected = manifest["items"].get((name, info.offset, info.length))
            if expected is None:
                raise CheckpointError(
                    f"The sharded checkpoint {path!r} is damaged: '.metadata' names bytes {info.offset}+{info.length} "
                    f"of {name!r}, which its checksum file does not list."
                )
            if crc != expected[0]:
                raise CheckpointError(
                    f"The sharded checkpoint {path!r} is damaged: entry {expected[1]!r} in file {name!r} "
                    f"(bytes {info.offset}+{info.length}) does not match its checksum. Restore the folder from "
                    "another copy, or resume from an older checkpoint."
                )


def checked_reader(path: str) -> Any:
    """A DCP ``FileSystemReader`` for ``path`` that verifies what each rank reads against :data:`MANIFEST`."""
    from torch.distributed.checkpoint import FileSystemReader

    # Checked here, before DCP starts: a damaged .metadata or a missing file is raised as it is,
    # on every rank, rather than after DCP's fallbacks have buried it in other errors.
    manifest = read_manifest(os.fspath(path))

    class _Reader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().read_metadata(*args, **kwargs)
            except FileNotFoundError as exc:
                raise CheckpointError(f"The sharded checkpoint {os.fspath(self.path)!r} is damaged: its file "
                                      f"{os.path.basename(exc.filename or '.metadata')!r} is missing.") from exc
            except Exception as exc:  # noqa: BLE001 - a damaged pickle fails in many ways
                raise CheckpointError(f"The sharded checkpoint {os.fspath(self.path)!r} is damaged: its '.metadata' "
                                      f"cannot be read ({type(exc).__name__}: {exc}).") from exc

        def read_data(self, plan: Any, planner: Any) -> Any:
            if manifest is not None:
                unique = {id(info): info for info in (self.storage_data[item.storage_index] for item in plan.items)}
                verify_items(os.fspath(self.path), manifest, list(unique.values()))
            else:
                for name in {self.storage_data[item.storage_index].relative_path for item in plan.items}:
                    if not os.path.exists(os.path.join(os.fspath(self.path), name)):
                        raise CheckpointError(f"The sharded checkpoint {os.fspath(self.path)!r} is damaged: its file {name!r} is missing.")
            return super().read_data(plan, planner)

    return _Reader(path)


def verify_folder(path: str) -> bool:
    """Verify every item of the sharded folder ``path`` in this process; ``False`` when it has no manifest.

    :raises CheckpointError: naming the damaged or missing file (and entry).
    """
    manifest = read_manifest(path)
    if manifest is None:
        return False
    metadata = checked_reader(path).read_metadata()
    verify_items(path, manifest, list(metadata.storage_data.values()))
    return True


# ---------------------------------------------------------------------- DCP's failures as weft errors


def _causes(exc: BaseException | None, seen: set[int] | None = None) -> list[BaseException]:
    """``exc``, what it was raised from, and every rank's failure inside a DCP ``CheckpointException``."""
    seen = set() if seen is None else seen
    if exc is None or id(exc) in seen:
        return []
    seen.add(id(exc))
    found = [exc]
    for failure in (getattr(exc, "failures", None) or {}).values():
        inner = failure[0] if isinstance(failure, tuple) else failure
        if isinstance(inner, BaseException):
            found += _causes(inner, seen)
    return found + _causes(exc.__cause__, seen) + _causes(exc.__context__, seen)


def is_dcp_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is DCP's ``CheckpointException`` (a ``BaseException``, not an ``Exception``)."""
    return type(exc).__name__ == "CheckpointException" and hasattr(exc, "failures")


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The "no space left" / "quota exceeded" error behind ``exc``, if any."""
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL:
            return cause
        text = str(cause)
        if "No space left on device" in text or "Disk quota exceeded" in text or "the disk is full" in text:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def as_checkpoint_error(exc: BaseException, path: str, action: str) -> CheckpointError:
    """A :class:`CheckpointError` for a failed sharded ``action`` ("save"/"load"/"read") of ``path``.

    A weft error raised on some rank keeps its message; a missing file and a full disk are
    named as such; anything else quotes every rank's failure.
    """
    causes = _causes(exc)
    if disk_full_cause(exc) is not None:
        return CheckpointError(
            f"Could not {action} the sharded checkpoint {path!r}: the disk is full (no space left on device). "
            "Free some space or save elsewhere; the previous checkpoint at that path, if any, is untouched "
            "and the partly written folder was removed."
        )
    for cause in causes:
        if isinstance(cause, CheckpointError):
            return CheckpointError(str(cause))
    for cause in causes:
        if isinstance(cause, FileNotFoundError) and action != "save":
            name = os.path.basename(cause.filename) if cause.filename else "a file"
            return CheckpointError(f"The sharded checkpoint {path!r} is damaged: its file {name!r} is missing.")
    if is_dcp_failure(exc):
        failures = getattr(exc, "failures", {}) or {}
        detail = "; ".join(
            f"rank {rank}: {type(f[0] if isinstance(f, tuple) else f).__name__}: {f[0] if isinstance(f, tuple) else f}"
            for rank, f in sorted(failures.items())
        )
        verb = "read" if action != "save" else "write"
        return CheckpointError(f"Could not {action} the sharded checkpoint {path!r} (it may be damaged or not {verb}able): {detail}")
    return CheckpointError(f"Could not {action} the sharded checkpoint {path!r}: {type(exc).__name__}: {exc}")
