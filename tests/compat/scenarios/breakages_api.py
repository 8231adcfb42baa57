"""Breakages of Fabric API fidelity: each puts weft back to its old, Lightning-incompatible behaviour."""

from breakages import breakage


@breakage
def all_gather_adds_world_dim():
    """single_device's all_gather adds a first dimension of size 1 (Lightning's returns the input)."""
    from weft.builtins.single_device import SingleDeviceStrategy
    from weft.hookspecs import hookimpl

    @hookimpl
    def weft_strategy_all_gather(self, fabric, tensor, sync_grads):
        return tensor.unsqueeze(0)

    SingleDeviceStrategy.weft_strategy_all_gather = weft_strategy_all_gather


@breakage
def all_reduce_returns_copy():
    """all_reduce returns the strategy's new tensor and leaves the input as it was (Lightning reduces in place)."""
    import weft.fabric as f
    from weft.utilities.apply import apply_to_tensors

    def all_reduce(self, data, group=None, reduce_op="mean"):
        op = f._reduce_op_name(reduce_op)
        self._require_environment("all_reduce")
        reduce = self._collective("all_reduce")
        return apply_to_tensors(f._numbers_to_tensors(data), lambda t: reduce(fabric=self, tensor=t.to(self.device), reduce_op=op))

    f.Fabric.all_reduce = all_reduce


@breakage
def numbers_in_default_dtypes():
    """Numbers become torch.tensor's default dtypes (int64, float64 here) instead of Lightning's int32/float32."""
    import torch

    import weft.collective_inputs as inputs

    inputs._NUMBER_DTYPES = ((bool, torch.uint8), (int, torch.int64), (float, torch.float64))


@breakage
def precision_none_rejected():
    """precision=None is an error (Lightning reads it as the default)."""
    import weft.fabric as f
    from weft.errors import ConfigurationError

    original = f.Fabric.__init__

    def init(self, *args, precision=f._Default("32-true"), **kwargs):
        if precision is None:
            raise ConfigurationError("precision=None: pass a name such as '32-true'")
        original(self, *args, precision=precision, **kwargs)

    f.Fabric.__init__ = init


@breakage
def clip_nonfinite_allowed_by_default():
    """clip_gradients defaults to error_if_nonfinite=False (Lightning's default is True)."""
    import weft.fabric as f

    original = f.Fabric.clip_gradients

    def clip_gradients(self, module, optimizer, clip_val=None, max_norm=None, norm_type=2.0, error_if_nonfinite=False):
        return original(self, module, optimizer, clip_val, max_norm, norm_type, error_if_nonfinite)

    f.Fabric.clip_gradients = clip_gradients


@breakage
def launch_checks_relaxed():
    """launch(non-callable) raises a plain RuntimeError, and a function taking no argument is not caught up front."""
    import weft.fabric as f
    from weft.errors import MisuseError

    def check(function):
        if not callable(function):
            raise MisuseError(f"fabric.launch() takes a function, got {type(function).__name__}")

    f._check_launch_function = check


@breakage
def backward_needs_a_model():
    """backward() refuses to run on a Fabric that set up no model itself."""
    import weft.fabric as f
    from weft.errors import MisuseError

    original = f.Fabric.backward

    def backward(self, tensor, *args, **kwargs):
        if not getattr(self, "_modules_set_up", 0):
            raise MisuseError("fabric.backward() was called before any model was set up")
        return original(self, tensor, *args, **kwargs)

    f.Fabric.backward = backward


@breakage
def misuse_errors_plain_runtime():
    """Misuse errors are only RuntimeErrors, not also the ValueError/TypeError Lightning raises."""
    import weft.argument_checks as checks
    import weft.fabric as f
    from weft.errors import MisuseError

    for module in (f, checks):  # Fabric's methods, and the argument checks they call
        module.MisuseValueError = MisuseError
        module.MisuseTypeError = MisuseError


@breakage
def checkpoint_private_mode():
    """Checkpoint files are created 0600 (tempfile.mkstemp) instead of the usual mode."""
    import os
    import tempfile

    import weft.checkpoint as checkpoint

    def new_file(folder, prefix, suffix):
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        os.close(fd)
        return name

    checkpoint._new_file = new_file


@breakage
def ddp_options_dropped():
    """DDPStrategy accepts Lightning's DistributedDataParallel keywords (process_group=...) but never passes them on."""
    from torch.nn.parallel import DistributedDataParallel
    from weft_ddp.strategy import DDPStrategy

    from weft.hookspecs import hookimpl

    @hookimpl
    def weft_strategy_setup_module(self, fabric, module):
        return DistributedDataParallel(module.to(fabric.device), find_unused_parameters=self.find_unused_parameters)

    DDPStrategy.weft_strategy_setup_module = weft_strategy_setup_module


@breakage
def reduce_op_names_strict():
    """Only weft's four lowercase names: 'avg', 'SUM' and torch.distributed.ReduceOp.SUM are refused."""
    import weft.fabric as f
    from weft.collective_inputs import _REDUCE_OPS
    from weft.errors import ConfigurationError

    def name(reduce_op):
        if reduce_op not in _REDUCE_OPS:
            raise ConfigurationError(f"reduce_op={reduce_op!r} is not one of {', '.join(_REDUCE_OPS)}")
        return reduce_op

    f._reduce_op_name = name  # Fabric's methods look it up in weft.fabric


@breakage
def lightning_launcher_flags_ignored():
    """Lightning's `fabric run` flags (LT_* variables) are ignored, as before: the script runs with weft's defaults."""
    import weft.cli_defaults as cli_defaults

    cli_defaults.LIGHTNING_CLI_ENV = {arg: f"COMPAT_IGNORED_{arg.upper()}" for arg in cli_defaults.LIGHTNING_CLI_ENV}
    cli_defaults.LIGHTNING_CLI_USED = "COMPAT_IGNORED_CLI_USED"
