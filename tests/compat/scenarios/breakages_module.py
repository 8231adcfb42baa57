"""Breakages of the set-up model's and optimizer's fidelity (see tests/compat/test_module.py)."""

from breakages import breakage


@breakage
def module_methods_bypass_strategy():
    """The old behaviour: any method of the set-up model is the user's own, called directly, so
    ``training_step`` bypasses DDP and nothing notices an unmarked method running the layers."""
    from weft.wrappers import _FabricModule

    _FabricModule._weft_through_forward = lambda self, name: getattr(self._original_module, name)
    _FabricModule._weft_tracked = lambda self, method, name: method


@breakage
def module_attributes_on_wrapper():
    """The old behaviour: attribute writes land on the wrapper; the user's module never sees them."""
    from torch import nn

    from weft.wrappers import _FabricModule

    _FabricModule.__setattr__ = nn.Module.__setattr__


@breakage
def module_compiled_as_is():
    """The old behaviour: a torch.compile'd model is set up as it is (the strategy wraps the
    OptimizedModule), so its state_dict keys carry the ``_orig_mod.`` prefix."""
    import weft.fabric

    weft.fabric.unwrap_compiled = lambda module: (module, None)


@breakage
def optimizer_fixed_signature():
    """The old behaviour: ``step(closure=None)`` and ``zero_grad(set_to_none=True)`` only, the
    closure always passed on (an optimizer whose ``step`` takes none fails)."""
    from weft.wrappers import _FabricOptimizer

    def step(self, closure=None):
        return self._weft_step(closure)

    def zero_grad(self, set_to_none=True):
        self._optimizer.zero_grad(set_to_none=set_to_none)

    _FabricOptimizer.step = step
    _FabricOptimizer.zero_grad = zero_grad
