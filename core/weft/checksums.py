"""Verifying the checksums a ``torch.save`` file already carries.

``torch.save`` writes a zip archive whose every record (``data.pkl``, one
``data/<key>`` per storage, ...) has a CRC-32, computed while writing; ``torch.load``
never checks them, so a flipped byte in tensor data loads silently as a wrong number.
:func:`verify_torch_file` checks every record before the file is loaded (zlib's CRC-32
runs at several GB/s, the file is read through ``mmap``, so nothing is copied), and names
the damaged entry (e.g. ``model/layer.weight``) by walking ``data.pkl`` with an
unpickler that executes nothing.

.. versionadded:: 0.2
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any

from weft.errors import CheckpointUnreadableError

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header (30 bytes)
_LOCAL_SIGNATURE = b"PK\x03\x04"


def crc32_of_range(path: str, offset: int, length: int) -> int:
    """CRC-32 of ``length`` bytes of ``path`` from ``offset`` (read through ``mmap``: no copy)."""
    if length == 0:
        return zlib.crc32(b"")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if offset + length > len(mm):
            return -1  # the range runs past the end: the file is truncated
        with memoryview(mm) as view:
            return zlib.crc32(view[offset : offset + length])


def verify_torch_file(path: str) -> None:
    """Check every record of the ``torch.save`` zip archive at ``path`` against its stored CRC-32.

    Files not in the zip format (torch's legacy format) carry no checksums and pass.
    A file written with ``torch.serialization.set_crc32_options(False)`` stores zeros and passes.

    :raises CheckpointError: naming ``path`` and the damaged entry (or the damaged structure).
    """
    with open(path, "rb") as f:
        if f.read(4) != _LOCAL_SIGNATURE:
            return  # not a zip: the legacy format, or junk that torch.load reports itself
        f.seek(0)
        try:
            infos = zipfile.ZipFile(f).infolist()
        except Exception as exc:  # noqa: BLE001 - zipfile fails on damaged directories in many ways
            raise _damaged(f"{path!r} is damaged: its zip directory cannot be read ({exc}).") from exc
        if not infos:
            raise _damaged(f"{path!r} is damaged: its zip directory lists no records.")
        if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
            raise CheckpointUnreadableError(
                f"{path!r} is not a readable checkpoint: it is a zip archive without the data.pkl record torch.save "
                "writes. Load checkpoints written by torch.save or fabric.save."
            )
        size = os.fstat(f.fileno()).st_size
        if all(i.CRC == 0 for i in infos if i.file_size):
            return  # written without checksums (torch's compute_crc32 option turned off)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as view:
            for info in infos:
                start = _data_start(path, view, info, size)
                if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                    raise _damaged(f"{path!r} is damaged: record {info.filename!r} is not stored as torch writes it.")
                if zlib.crc32(view[start : start + info.file_size]) != info.CRC:
                    raise CheckpointUnreadableError(_damaged_record_message(path, view, infos, info))


def _damaged(message: str) -> CheckpointUnreadableError:
    return CheckpointUnreadableError(
        f"{message} It is not a readable checkpoint (corrupt, truncated, or not written by torch.save): "
        "restore it from another copy, or resume from an older checkpoint (weft.checkpoint.latest_checkpoint)."
    )


def _data_start(path: str, view: memoryview, info: zipfile.ZipInfo, size: int) -> int:
    """Where ``info``'s bytes begin, after checking its local header agrees with the directory."""
    offset = info.header_offset
    if info.external_attr & 0x10:  # the MS-DOS "directory" bit: torch's reader would return no data
        raise _damaged(f"{path!r} is damaged: record {info.filename!r} is marked as a folder.")
    if offset < 0 or offset + _LOCAL_HEADER.size > size:
        raise _damaged(f"{path!r} is damaged (truncated): record {info.filename!r} lies past the end.")
    fields = _LOCAL_HEADER.unpack(view[offset : offset + _LOCAL_HEADER.size])
    name_len, extra_len = fields[9], fields[10]
    name_at = offset + _LOCAL_HEADER.size
    name = bytes(view[name_at : name_at + name_len])
    if fields[0] != _LOCAL_SIGNATURE or name.decode("utf-8", "replace") != info.filename:
        raise _damaged(f"{path!r} is damaged: the zip header of record {info.filename!r} does not match its directory.")
    start = name_at + name_len + extra_len
    if start + info.file_size > size:
        raise _damaged(f"{path!r} is damaged (truncated): record {info.filename!r} runs past the end.")
    return start


def _damaged_record_message(path: str, view: memoryview, infos: list[zipfile.ZipInfo], bad: zipfile.ZipInfo) -> str:
    prefix = bad.filename.split("/", 1)[0] + "/"
    record = bad.filename[len(prefix):]
    if record.startswith("data/"):
        pickled = next((i for i in infos if i.filename == prefix + "data.pkl"), None)
        entries: list[str] = []
        if pickled is not None:
            try:
                start = _data_start(path, view, pickled, len(view))
                entries = entries_of_storage(bytes(view[start : start + pickled.file_size]), record[len("data/"):])
            except Exception:  # noqa: BLE001 - naming the entry is best effort; the damage is reported anyway
                entries = []
        where = f"entry {' / '.join(entries)}" if entries else "an unnamed entry"
        return (
            f"{path!r} is damaged: the tensor data of {where} (record {record!r}) does not match its checksum. "
            "Restore it from another copy, or resume from an older checkpoint."
        )
    return (
        f"{path!r} is damaged: record {record!r} (the file's {'object structure' if record == 'data.pkl' else 'metadata'}) "
        "does not match its checksum. Restore it from another copy, or resume from an older checkpoint."
    )


# ---------------------------------------------------------------------- naming entries without executing anything


class _Stub:
    """Stands in for every global ``data.pkl`` names: records what it was built from, runs nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Stub":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.items = args, {}

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("items", {})[key] = value

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("items", {})[len(self.__dict__.get("items", {}))] = value

    def extend(self, values: Any) -> None:
        for value in values:
            self.append(value)


class _StorageKey(str):
    """A storage reference in ``data.pkl``: its record key."""


class _NamingUnpickler(pickle.Unpickler):
    _stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> type:
        # A fresh class per global, never the real one: nothing from the file is imported or run.
        return self._stubs.setdefault((module, name), type(name, (_Stub,), {}))

    def persistent_load(self, pid: Any) -> _StorageKey:
        return _StorageKey(pid[2] if isinstance(pid, tuple) and len(pid) > 2 else pid)


def entries_of_storage(pickled: bytes, key: str) -> list[str]:
    """The entry names (``a/b/c``) under which storage ``key`` appears in a ``data.pkl``."""
    import io

    root = _NamingUnpickler(io.BytesIO(pickled)).load()
    found: list[str] = []

    def walk(obj: Any, name: str, depth: int) -> None:
        if depth > 100 or len(found) > 3:
            return
        if isinstance(obj, _StorageKey):
            if obj == key:
                found.append(name or "<root>")
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{name}/{k}" if name else str(k), depth + 1)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{name}/{i}" if name else str(i), depth + 1)
        elif isinstance(obj, _Stub):
            for arg in obj.__dict__.get("args", ()):  # a tensor: its storage is one of the arguments
                walk(arg, name, depth + 1)
            walk(obj.__dict__.get("items", {}), name, depth + 1)
            walk(obj.__dict__.get("state"), name, depth + 1)

    walk(root, "", 0)
    return found
