"""A device's theoretical peak FLOP/s, for model FLOPs utilization (MFU).

Only NVIDIA GPUs whose name this module recognises get a number; everything else (CPUs, MPS,
unknown GPUs, a dtype the chip has no figure for) gets ``None`` and so no MFU: a guessed peak
would print a plausible but wrong MFU.

The figures are dense (no structured sparsity) per-GPU peaks from NVIDIA's datasheets, in
FLOP/s. ``"tf32"`` is what float32 matmuls run at on Ampere and later when
``torch.get_float32_matmul_precision()`` is not ``"highest"``.
"""

from __future__ import annotations

import re
from typing import Union

import torch

from weft.utilities.rank_zero import rank_zero_warn

_T = 1e12
# chip: (float64, float32, tf32, bfloat16, float16, int8, int4); None where the chip has no such figure.
_COLUMNS = ("float64", "float32", "tf32", "bfloat16", "float16", "int8", "int4")
_PEAKS_TERA = {
    # Hopper. The H200 SXM computes as the H100 SXM does; NVL parts are single-GPU PCIe cards.
    "h200 sxm": (34, 67, 494.7, 989.4, 989.4, 1978.9, None),
    "h200 nvl": (30, 60, 417.5, 835.5, 835.5, 1670.5, None),
    "h100 sxm": (33.5, 66.9, 494.7, 989.4, 989.4, 1978.9, None),
    "h100 nvl": (30, 60, 417.5, 835.5, 835.5, 1670.5, None),
    "h100 pcie": (25.6, 51.2, 378, 756, 756, 1513, None),
    # Ada
    "rtx 4090": (None, 82.6, 82.6, 82.6, 82.6, 660.6, 1321.2),
    "rtx 4080 super": (None, 52.2, 52.2, 52.2, 52.2, 417.6, 835.2),
    "rtx 4080": (None, 48.7, 48.7, 48.7, 48.7, 389.9, 779.8),
    "l4": (None, 30.3, 60, 121, 121, 242, 484),
    "l40": (None, 90.5, 90.5, 181, 181, 362, 724),
    "l40s": (None, 91.6, 183, 362, 362, 733, 733),
    # Ampere
    "a100": (9.7, 19.5, 156, 312, 312, 624, None),
    "a6000": (None, 38.7, 77.4, 38.7, 38.7, 309.7, 619.3),
    "a40": (None, 37.4, 74.8, 37.4, 37.4, 299.3, 598.7),
    "a10g": (None, 31.2, 62.5, 125, 125, 250, 500),
    "rtx 3090 ti": (None, 40, 40, 40, 40, 320, 640),
    "rtx 3090": (None, 35.6, 35.6, 35.6, 35.6, 284, 568),
    "rtx 3080 ti": (None, 34.1, 34.1, 34.1, 34.1, 272.8, 546.6),
    "rtx 3080": (None, 29.8, 29.8, 29.8, 29.8, 238, 476),
    "rtx 3070": (None, 20.3, 20.3, 20.3, 20.3, 162.6, 325.2),
    # Turing (no bfloat16, no tf32)
    "t4": (None, 8.1, None, None, 65, 130, 260),
    "quadro rtx 5000": (None, 11.2, None, None, 89.2, None, None),
    "rtx 2080 super": (None, 11.2, None, None, 22.3, 178.4, 356.8),
    "rtx 2080 ti": (None, 14.2, None, None, 28.5, 227.7, 455.4),
    "rtx 2080": (None, 10.6, None, None, 21.2, 169.6, 339.1),
    "rtx 2070 super": (None, 9.1, None, None, 18.1, 145, 290),
    "titan rtx": (None, 16.3, None, None, 32.6, 261, 522),
    # Volta
    "v100 sxm": (7.8, 15.7, None, None, 125, None, None),
    "v100 pcie": (7, 14, None, None, 112, None, None),
    "v100s pcie": (8.2, 16.4, None, None, 130, None, None),
}

# (pattern on the lower-cased device name, chip); the first match wins. Whole words only, so an
# "RTX A4000" is not taken for an A40 nor an "L40S" for an L4.
_NAME_RULES = (
    (r"\bh200\b.*\bnvl\b", "h200 nvl"),
    (r"\bh200\b", "h200 sxm"),  # the SXM part reports plain "NVIDIA H200"
    (r"\bh100\b.*\bnvl\b", "h100 nvl"),
    (r"\bh100\b.*\b(pcie|hbm2e)\b", "h100 pcie"),
    (r"\bh100\b.*\bhbm3\b", "h100 sxm"),
    (r"\bquadro rtx 5000\b", "quadro rtx 5000"),
    (r"\btitan rtx\b", "titan rtx"),
    (r"\bgeforce rtx (\d{4})( super| ti)?\b", None),  # "rtx NNNN[ super| ti]"
    (r"\bl40s\b", "l40s"),
    (r"\bl40\b", "l40"),
    (r"\bl4\b", "l4"),
    (r"\ba100\b", "a100"),
    (r"\ba6000\b", "a6000"),
    (r"\ba40\b", "a40"),
    (r"\ba10g\b", "a10g"),
    (r"\bt4\b", "t4"),
    (r"\bv100s-pcie", "v100s pcie"),
    (r"\bv100-sxm", "v100 sxm"),
    (r"\bv100-pcie", "v100 pcie"),
)


def chip_of(device_name: str) -> str | None:
    """The table's name for a CUDA device name (``torch.cuda.get_device_name``), or ``None``."""
    name = device_name.lower()
    if re.search(r"\b(laptop|mobile|max-q)\b", name):
        return None  # a notebook part runs well below the desktop card of the same number
    for pattern, chip in _NAME_RULES:
        match = re.search(pattern, name)
        if match:
            return chip if chip is not None else f"rtx {match.group(1)}{match.group(2) or ''}"
    return None


def peak_flops(chip: str, dtype: Union[torch.dtype, str]) -> float | None:
    """The table's peak FLOP/s of ``chip`` computing in ``dtype``; ``None`` when it has none."""
    row = _PEAKS_TERA.get(chip)
    if row is None:
        return None
    key = str(dtype).replace("torch.", "")
    if key not in _COLUMNS:
        return None
    tera = row[_COLUMNS.index(key)]
    return None if tera is None else tera * _T


def get_available_flops(device: torch.device, dtype: Union[torch.dtype, str]) -> int | None:
    """Theoretical peak FLOP/s of one ``device`` computing in ``dtype``; ``None`` when unknown.

    An optimistic upper bound, reached only by large matmuls. Unknown CUDA devices and dtypes
    warn once on rank 0; other device types (the CPU) return ``None`` silently.
    """
    if device.type != "cuda":
        return None
    device_name = torch.cuda.get_device_name(device)
    chip = chip_of(device_name)
    if chip is None:
        rank_zero_warn(f"FLOPs not found for {device_name!r}: no MFU is reported")
        return None
    if dtype is torch.float32 and torch.cuda.get_device_capability(device)[0] >= 8:
        if torch.get_float32_matmul_precision() != "highest":
            dtype = "tf32"
    flops = peak_flops(chip, dtype)
    if flops is None:
        rank_zero_warn(f"{device_name!r} ({chip}) has no peak FLOPs figure for {dtype}: no MFU is reported")
        return None
    return int(flops)
