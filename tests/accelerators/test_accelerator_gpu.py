"""The cuda accelerator on a machine with CUDA (skipped without one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_python

from weft import Fabric, registry
from weft.errors import ConfigurationError

COUNT = torch.cuda.device_count()
SCRIPTS = Path(__file__).parent / "scripts"
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(COUNT == 0, reason="needs a CUDA device")]


def test_auto_picks_cuda():
    assert Fabric(devices=1).accelerator_name == "cuda"


@pytest.mark.parametrize("name", ["cuda", "gpu"])
def test_devices_values_on_real_gpus(name):
    assert Fabric(accelerator=name, devices=-1).devices == list(range(COUNT))
    assert Fabric(accelerator=name, devices="-1").devices == list(range(COUNT))
    assert Fabric(accelerator=name, devices=1).devices == [0]
    assert Fabric(accelerator=name, devices=[COUNT - 1]).devices == [COUNT - 1]
    assert Fabric(accelerator=name, devices=f"{COUNT - 1},").devices == [COUNT - 1]


def test_more_devices_than_exist_says_how_many_were_found():
    with pytest.raises(ConfigurationError, match=rf"asks for {COUNT + 2} cuda devices, but only {COUNT} w"):
        Fabric(accelerator="cuda", devices=COUNT + 2)
    with pytest.raises(ConfigurationError, match=rf"names cuda device {COUNT},"):
        Fabric(accelerator="cuda", devices=[COUNT])


def test_setup_device_makes_the_chosen_gpu_current():
    index = COUNT - 1
    fabric = Fabric(accelerator="cuda", devices=[index])
    model = fabric.setup(torch.nn.Linear(2, 2))
    assert fabric.device == torch.device("cuda", index)
    assert torch.cuda.current_device() == index
    assert next(model.parameters()).device == torch.device("cuda", index)


def test_cuda_visible_devices_is_respected():
    code = (
        "import torch\nfrom weft import Fabric\n"
        "f = Fabric(accelerator='cuda', devices=-1)\n"
        "print(f.devices, torch.cuda.is_initialized())\n"
    )
    out = run_python(["-c", code], env={"CUDA_VISIBLE_DEVICES": "0"}, timeout=120).stdout.strip()
    assert out == "[0] False"  # one visible device, found without initialising CUDA
    proc = run_python(["-c", "from weft import Fabric; Fabric(accelerator='cuda', devices=2)"],
                      env={"CUDA_VISIBLE_DEVICES": "0"}, timeout=120, check=False)
    assert "only 1 was found" in proc.stderr and "CUDA_VISIBLE_DEVICES='0'" in proc.stderr


@pytest.mark.skipif("ddp" not in registry.names("strategies"), reason="weft-ddp is not installed")
@pytest.mark.timeout(300)
def test_ddp_with_one_cuda_device_uses_nccl_and_trains():
    precisions = ["16-mixed"]
    if torch.cuda.is_bf16_supported(including_emulation=False):
        precisions.insert(0, "bf16-mixed")
    proc = run_python([SCRIPTS / "cuda_ddp_one_device.py", *precisions], timeout=240)
    results = [json.loads(line[len("RESULT ") :]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert [r["precision"] for r in results] == precisions, proc.stdout + proc.stderr
    for r in results:
        assert r["backend"] == "nccl" and r["world_size"] == 1
        assert r["device"] == "cuda:0" and r["current_device"] == 0
        assert r["losses"][-1] < 0.6 * r["losses"][0], r
