"""Deliberately broken precisions, accelerators and cluster environments, one fault each.

Installed for tests through a *.dist-info on sys.path (so a kit started in a new process finds
them by name), or registered in-process with ``weft.testing.registered``. Written only against
the documented plugin API, as a third party would write them.
"""

import os

import torch

from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl
from weft.records import PrecisionDtypes
from weft.utilities.apply import convert_floating


class MisspeltPrecision:
    """Its one required hook is misspelt (``dtype`` for ``dtypes``): weft never calls it."""

    name = "broken_misspelt"

    @hookimpl
    def weft_precision_dtype(self):
        return PrecisionDtypes(param=torch.float32, compute=torch.float32, reduce=torch.float32)


class UnappliedPrecision:
    """Declares bf16 compute under autocast but gives no forward context: the forward runs in fp32."""

    name = "broken_unapplied"

    @hookimpl
    def weft_precision_dtypes(self):
        return PrecisionDtypes(param=torch.float32, compute=torch.bfloat16, reduce=torch.float32, autocast=True)


class _Opaque:
    """Not a type ``torch.load(weights_only=True)`` may rebuild."""


class UnloadableStatePrecision:
    """Keeps state a checkpoint cannot be read back with (an arbitrary object)."""

    name = "broken_state"

    def __init__(self):
        self.state = {"steps": 0, "extra": _Opaque()}

    @hookimpl
    def weft_precision_dtypes(self):
        return PrecisionDtypes(param=torch.float32, compute=torch.float32, reduce=torch.float32)

    @hookimpl
    def weft_precision_state_dict(self):
        return self.state

    @hookimpl
    def weft_precision_load_state_dict(self, state):
        self.state = dict(state)


class UnconvertedParamsPrecision:
    """Declares bf16 parameters but never converts the module: they stay float32."""

    name = "broken_params"

    @hookimpl
    def weft_precision_dtypes(self):
        return PrecisionDtypes(param=torch.bfloat16, compute=torch.float32, reduce=torch.float32)


class HalfOutputPrecision:
    """Everything in bf16, outputs included: a loss computed from them would accumulate in 16 bits."""

    name = "broken_output"

    @hookimpl
    def weft_precision_dtypes(self):
        return PrecisionDtypes(param=torch.bfloat16, compute=torch.bfloat16, reduce=torch.bfloat16)

    @hookimpl
    def weft_precision_convert_module(self, module):
        return module.to(torch.bfloat16)

    @hookimpl
    def weft_precision_convert_input(self, data):
        return convert_floating(data, torch.bfloat16)


class SkippingPrecision:
    """Its optimizer-step hook never runs the step: training silently does nothing."""

    name = "broken_skips"

    @hookimpl
    def weft_precision_dtypes(self):
        return PrecisionDtypes(param=torch.float32, compute=torch.float32, reduce=torch.float32)

    @hookimpl
    def weft_precision_optimizer_step(self, optimizer, step):
        return None


class DictDtypesPrecision:
    """Answers ``weft_precision_dtypes`` with a dict instead of a ``PrecisionDtypes``."""

    name = "broken_dtypes_type"

    @hookimpl
    def weft_precision_dtypes(self):
        return {"param": torch.float32, "compute": torch.float32, "reduce": torch.float32}


class _WorkingCPU:
    """A correct CPU accelerator that the broken ones below change one thing of."""

    name = "broken_base"

    @hookimpl
    def weft_accelerator_is_available(self):
        return True

    @hookimpl
    def weft_accelerator_device_count(self):
        return 1

    @hookimpl
    def weft_accelerator_parse_devices(self, devices):
        if devices == "auto" or devices == 1:
            return [0]
        raise ConfigurationError(f"devices={devices!r}: this accelerator runs one process")

    @hookimpl
    def weft_accelerator_get_device(self, index):
        return torch.device("cpu")


class StrDeviceAccelerator(_WorkingCPU):
    """``get_device`` returns the string ``"cpu"`` instead of a ``torch.device``."""

    name = "broken_str_device"

    @hookimpl
    def weft_accelerator_get_device(self, index):
        return "cpu"


class AcceptsAnythingAccelerator(_WorkingCPU):
    """``parse_devices`` accepts values that cannot work (``devices=0``) instead of refusing them."""

    name = "broken_accepts"

    @hookimpl
    def weft_accelerator_parse_devices(self, devices):
        return [0]


class IntAvailableAccelerator(_WorkingCPU):
    """``is_available`` answers ``1`` instead of ``True``."""

    name = "broken_available"

    @hookimpl
    def weft_accelerator_is_available(self):
        return 1


class WrongArgumentAccelerator(_WorkingCPU):
    """``get_device`` takes ``idx``, an argument its specification does not have (it is ``index``)."""

    name = "broken_argument"

    @hookimpl
    def weft_accelerator_get_device(self, idx):
        return torch.device("cpu")


_SHARED = _WorkingCPU()


def shared_accelerator():
    """A factory that hands out one object to every caller: two Fabrics would share its state."""
    return _SHARED


class SameRankEnvironment:
    """Reads the global rank from ``GROUP_RANK`` (the *node* rank): every process of a node says 0."""

    name = "broken_same_rank"

    @hookimpl
    def weft_environment_detect(self):
        return 5 if "WORLD_SIZE" in os.environ else None

    @hookimpl
    def weft_environment_creates_processes_externally(self):
        return True

    @hookimpl
    def weft_environment_world_size(self):
        return int(os.environ["WORLD_SIZE"])

    @hookimpl
    def weft_environment_global_rank(self):
        return int(os.environ.get("GROUP_RANK", 0))

    @hookimpl
    def weft_environment_local_rank(self):
        return int(os.environ["LOCAL_RANK"])

    @hookimpl
    def weft_environment_main_address(self):
        return os.environ["MASTER_ADDR"]

    @hookimpl
    def weft_environment_main_port(self):
        return int(os.environ["MASTER_PORT"])


PRECISIONS = {
    "broken_misspelt": MisspeltPrecision,
    "broken_unapplied": UnappliedPrecision,
    "broken_state": UnloadableStatePrecision,
    "broken_params": UnconvertedParamsPrecision,
    "broken_output": HalfOutputPrecision,
    "broken_skips": SkippingPrecision,
    "broken_dtypes_type": DictDtypesPrecision,
}
ACCELERATORS = {
    "broken_str_device": StrDeviceAccelerator,
    "broken_accepts": AcceptsAnythingAccelerator,
    "broken_available": IntAvailableAccelerator,
    "broken_argument": WrongArgumentAccelerator,
    "broken_shared": shared_accelerator,
}
ENVIRONMENTS = {"broken_same_rank": SameRankEnvironment}
