"""Peak FLOP/s by device name and dtype: never guessed, and never taken from a look-alike name."""

from __future__ import annotations

import pytest
import torch

from weft.utilities import flops, get_available_flops


def test_cpu_and_meta_have_no_peak():
    for dtype in (torch.float32, torch.bfloat16):
        assert get_available_flops(torch.device("cpu"), dtype) is None
        assert get_available_flops(torch.device("meta"), dtype) is None


@pytest.mark.parametrize(
    "name, chip",
    [
        ("NVIDIA H200", "h200 sxm"),
        ("NVIDIA H200 NVL", "h200 nvl"),
        ("NVIDIA H100 80GB HBM3", "h100 sxm"),
        ("NVIDIA H100 PCIe", "h100 pcie"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100 80GB PCIe", "a100"),
        ("NVIDIA GeForce RTX 4080 SUPER", "rtx 4080 super"),
        ("NVIDIA GeForce RTX 3090 Ti", "rtx 3090 ti"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),  # Lightning's substring match takes it for an L4
        ("NVIDIA RTX A6000", "a6000"),
        ("Tesla T4", "t4"),
        ("Tesla V100-SXM2-16GB", "v100 sxm"),
        ("Tesla V100S-PCIE-32GB", "v100s pcie"),
        ("Quadro RTX 5000", "quadro rtx 5000"),
        # Unknown parts get no figure rather than a neighbour's:
        ("NVIDIA RTX A4000", None),  # not an A40
        ("NVIDIA RTX A1000", None),  # not an A100
        ("NVIDIA GeForce RTX 3080 Laptop GPU", None),  # slower than the desktop 3080
        ("NVIDIA H100", None),  # SXM or PCIe: the name does not say
        ("NVIDIA B200", None),
    ],
)
def test_chip_from_name(name, chip):
    assert flops.chip_of(name) == chip


def test_every_chip_in_the_rules_has_figures():
    for _, chip in flops._NAME_RULES:
        assert chip is None or chip in flops._PEAKS_TERA


def test_figures_are_per_dtype():
    assert flops.peak_flops("a100", torch.bfloat16) == 312e12
    assert flops.peak_flops("a100", "tf32") == 156e12
    assert flops.peak_flops("t4", torch.bfloat16) is None  # Turing has no bfloat16
    assert flops.peak_flops("a100", torch.float8_e4m3fn) is None


class FakeCuda:
    def __init__(self, monkeypatch, name, capability):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


def test_cuda_float32_counts_as_tf32_on_ampere_unless_highest(monkeypatch):
    FakeCuda(monkeypatch, "NVIDIA A100-SXM4-40GB", (8, 0))
    cuda = torch.device("cuda", 0)
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert get_available_flops(cuda, torch.float32) == int(19.5e12)
        torch.set_float32_matmul_precision("high")
        assert get_available_flops(cuda, torch.float32) == int(156e12)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert get_available_flops(cuda, torch.bfloat16) == int(312e12)


def test_unknown_cuda_device_or_dtype_warns_and_gives_none(monkeypatch):
    FakeCuda(monkeypatch, "NVIDIA Mystery 9000", (9, 0))
    with pytest.warns(UserWarning, match="Mystery 9000"):
        assert get_available_flops(torch.device("cuda", 0), torch.bfloat16) is None
    FakeCuda(monkeypatch, "Tesla T4", (7, 5))
    with pytest.warns(UserWarning, match="no peak FLOPs figure for torch.bfloat16"):
        assert get_available_flops(torch.device("cuda", 0), torch.bfloat16) is None


@pytest.mark.parametrize("name", ["NVIDIA A100-SXM4-80GB", "Tesla T4", "NVIDIA GeForce RTX 4090", "NVIDIA L4", "NVIDIA H100 PCIe"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_same_figure_as_lightning_where_its_table_is_right(monkeypatch, name, dtype):
    lightning_throughput = pytest.importorskip("lightning.fabric.utilities.throughput")
    FakeCuda(monkeypatch, name, (8, 0))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = get_available_flops(torch.device("cuda", 0), dtype)
        theirs = lightning_throughput.get_available_flops(torch.device("cuda", 0), dtype)
    assert ours == theirs
