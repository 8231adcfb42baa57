"""Choosing an accelerator by name or by 'auto', and what each one tells strategies."""

from __future__ import annotations

import pytest
import torch

from weft import Fabric, registry
from weft.errors import ConfigurationError
from weft.selection import _hooks_of
from weft_accelerators import CUDA_PRIORITY, MPS_PRIORITY
from weft_accelerators.cuda import CUDAAccelerator
from weft_accelerators.mps import MPSAccelerator

HAS_CUDA = torch.cuda.device_count() > 0
HAS_MPS = MPSAccelerator().weft_accelerator_is_available()


def test_names_come_from_installed_entry_points():
    names = registry.names("accelerators")
    assert {"cpu", "cuda", "gpu", "mps"} <= set(names)
    assert type(registry.create("accelerators", "gpu")) is CUDAAccelerator
    assert type(registry.create("accelerators", "cuda")) is CUDAAccelerator
    assert type(registry.create("accelerators", "mps")) is MPSAccelerator


def test_auto_priorities_prefer_cuda_then_mps_then_cpu():
    priority = {n: _hooks_of(registry.create("accelerators", n)).weft_accelerator_auto_priority() for n in ("cuda", "mps", "cpu")}
    assert priority == {"cuda": CUDA_PRIORITY, "mps": MPS_PRIORITY, "cpu": 0}
    assert priority["cuda"] > priority["mps"] > priority["cpu"]


def test_auto_picks_the_highest_priority_available_accelerator():
    expected = "cuda" if HAS_CUDA else "mps" if HAS_MPS else "cpu"
    assert Fabric(devices=1).accelerator_name == expected


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "gpu"])
def test_cuda_without_cuda_says_so_and_lists_what_is_available(name):
    with pytest.raises(ConfigurationError, match=rf"accelerator='{name}' is not available on this machine\. Available: .*cpu"):
        Fabric(accelerator=name, devices=1)


@pytest.mark.skipif(HAS_MPS, reason="checks the message on a machine without MPS")
def test_mps_without_mps_says_so():
    with pytest.raises(ConfigurationError, match=r"accelerator='mps' is not available.*Available: .*cpu"):
        Fabric(accelerator="mps", devices=1)


def test_process_group_backend_follows_the_device():
    cuda = _hooks_of(CUDAAccelerator())
    assert cuda.weft_accelerator_process_group_backend(device=torch.device("cuda", 1)) == "nccl"
    assert cuda.weft_accelerator_process_group_backend(device=torch.device("cpu")) == "gloo"
    assert _hooks_of(MPSAccelerator()).weft_accelerator_process_group_backend(device=torch.device("mps", 0)) == "gloo"
    assert _hooks_of(registry.create("accelerators", "cpu")).weft_accelerator_process_group_backend(device=torch.device("cpu")) == "gloo"


def test_devices_map_to_torch_devices_without_initialising_cuda():
    initialised_before = torch.cuda.is_initialized()  # other tests in this process may have used a GPU
    cuda = _hooks_of(CUDAAccelerator())
    assert cuda.weft_accelerator_get_device(index=1) == torch.device("cuda", 1)
    assert _hooks_of(MPSAccelerator()).weft_accelerator_get_device(index=0) == torch.device("mps", 0)
    # building a Fabric (availability, device counts, validation) must leave CUDA untouched,
    # so that processes started afterwards do not inherit a CUDA context
    Fabric(devices=1, precision="bf16-mixed")
    Fabric(accelerator="cpu", devices=1, precision="16-mixed")
    assert torch.cuda.is_initialized() == initialised_before


def test_importing_the_plugins_does_not_initialise_cuda(python):
    code = (
        "import torch, weft_accelerators.cuda, weft_accelerators.mps, weft_precision.mixed, weft_precision.true\n"
        "from weft import Fabric\n"
        "Fabric(devices=1, precision='16-mixed')\n"
        "assert not torch.cuda.is_initialized(), 'CUDA was initialised'\n"
        "print('ok')\n"
    )
    assert python(["-c", code], timeout=120).stdout.strip() == "ok"
