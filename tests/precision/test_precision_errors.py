"""Impossible precision choices fail at Fabric(...) with a message saying what to use instead."""

from __future__ import annotations

import pytest
import torch

from weft import Fabric
from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl
from weft_precision import BFloat16MixedPrecision


class _DeviceTypeAccelerator:
    """A real accelerator plugin whose device is of a given type: lets validation see
    a device type this machine does not have. Only the hooks validation asks are real."""

    def __init__(self, device_type):
        self.name = f"test-{device_type}"
        self.device_type = device_type

    @hookimpl
    def weft_accelerator_is_available(self):
        return True

    @hookimpl
    def weft_accelerator_device_count(self):
        return 1  # required of every accelerator (weft.contract.REQUIRED_HOOKS)

    @hookimpl
    def weft_accelerator_parse_devices(self, devices):
        return [0]

    @hookimpl
    def weft_accelerator_get_device(self, index):
        return torch.device(self.device_type, index)


@pytest.mark.parametrize("precision", ["64-true", "64", 64])
def test_float64_on_mps_is_rejected(precision):
    with pytest.raises(ConfigurationError, match="MPS devices have no float64 support.*accelerator='cpu'"):
        Fabric(plugins=[_DeviceTypeAccelerator("mps")], precision=precision)


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_mixed_precision_without_autocast_on_the_device_type_is_rejected(precision):
    # torch offers no autocast for the meta device type
    with pytest.raises(ConfigurationError, match=rf"precision='{precision}' needs torch.autocast.*'meta'.*'32-true'"):
        Fabric(plugins=[_DeviceTypeAccelerator("meta")], precision=precision)


def test_autocast_dtype_the_device_type_does_not_support_is_rejected():
    class Float64Mixed(BFloat16MixedPrecision):  # cpu autocast supports fp16 and bf16 only
        name = "float64-mixed"
        dtype = torch.float64

    with pytest.raises(ConfigurationError, match="cpu autocast .* does not support float64"):
        Fabric(accelerator="cpu", precision=Float64Mixed())


def test_autocast_device_type_comes_from_the_fabric_device():
    assert Fabric(accelerator="cpu", precision="bf16-mixed").precision.device_type == "cpu"
    # validation happens in Fabric(...), so this device type reached the precision
    fabric = Fabric(plugins=[_DeviceTypeAccelerator("mps")], precision="bf16-mixed")
    assert fabric.precision.device_type == "mps"


@pytest.mark.parametrize("name, suggestion", [("bf16_mixed", "bf16-mixed"), ("16-mixd", "16-mixed"), ("64-tru", "64-true")])
def test_misspelled_precision_suggests_the_name(name, suggestion):
    with pytest.raises(ConfigurationError, match=f"Did you mean '{suggestion}'"):
        Fabric(accelerator="cpu", precision=name)


@pytest.mark.parametrize("value", [8, "128", "fp8-mixed"])
def test_unknown_precision_lists_installed_ones(value):
    with pytest.raises(ConfigurationError, match="Unknown precision.*Installed precisions: .*bf16-mixed"):
        Fabric(accelerator="cpu", precision=value)
