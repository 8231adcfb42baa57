"""Character-level data: a vocabulary read off the text, and fixed-length windows over it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

DEFAULT_TEXT = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare.txt"


class CharVocab:
    """Maps characters to ids and back; the alphabet is every character in the text, sorted."""

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        unknown = set(text) - self._ids.keys()
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {''.join(sorted(unknown))!r}")
        return torch.tensor([self._ids[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class CharWindows(Dataset):
    """Windows of ``block_size`` characters, paired with the same window shifted by one.

    Example ``i`` starts near ``i * stride``. With ``jitter`` the start moves by a random
    ``0..stride-1`` characters each time it is drawn, so a passage is not always seen at
    the same positions (a small model on a small text would otherwise learn text by position).

    :param ids: the encoded text.
    :param block_size: characters per example.
    :param stride: distance between the starts of consecutive windows.
    :param jitter: randomise each start within its stride (training); ``False`` for fixed windows (validation).
    """

    def __init__(self, ids: torch.Tensor, block_size: int, stride: int, jitter: bool = False) -> None:
        if len(ids) <= block_size + stride + 1:
            raise ValueError(f"the text ({len(ids)} characters) is too short for blocks of {block_size}")
        self.ids, self.block_size, self.stride, self.jitter = ids, block_size, max(1, stride), jitter
        self.starts = range(0, len(ids) - block_size - self.stride, self.stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int):
        start = self.starts[index]
        if self.jitter:
            start += int(torch.randint(self.stride, ()))
        chunk = self.ids[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]


def load_text(path: str | Path = DEFAULT_TEXT) -> str:
    return Path(path).read_text(encoding="utf-8")


def split(ids: torch.Tensor, val_fraction: float = 0.1):
    """The first ``1 - val_fraction`` of the text trains, the rest validates."""
    cut = int(len(ids) * (1 - val_fraction))
    return ids[:cut], ids[cut:]
