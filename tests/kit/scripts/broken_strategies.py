"""Deliberately broken strategies, installed for tests through a *.dist-info on sys.path."""

from weft.builtins.single_device import SingleDeviceStrategy
from weft.hookspecs import hookimpl


class MissingHookStrategy(SingleDeviceStrategy):
    """Leaves out a required hook."""

    name = "broken_missing"
    weft_strategy_all_gather = None  # not a hook implementation any more


class WrongSignatureStrategy(SingleDeviceStrategy):
    """Names an argument the hook specification does not have."""

    name = "broken_signature"

    @hookimpl
    def weft_strategy_all_reduce(self, fabric, tensor, op):
        return tensor.clone()


class RaisingStrategy(SingleDeviceStrategy):
    """Raises inside a hook at run time."""

    name = "broken_raises"

    @hookimpl
    def weft_strategy_all_reduce(self, fabric, tensor, reduce_op):
        raise RuntimeError("all_reduce exploded on purpose")


class WrongResultStrategy(SingleDeviceStrategy):
    """Returns a wrong value: gathers something other than what each rank sent."""

    name = "broken_result"

    @hookimpl
    def weft_strategy_all_gather(self, fabric, tensor, sync_grads):
        return (tensor + 1).unsqueeze(0)
