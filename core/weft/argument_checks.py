"""Checks of the arguments given to ``Fabric`` and its methods, raising weft errors that name the bad value.

Wrong types are TypeErrors and wrong values ValueErrors, as Lightning raises them.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from weft.errors import (
    BackwardError,
    ConfigurationError,
    ConfigurationTypeError,
    LossTypeError,
    MisuseTypeError,
    MisuseValueError,
    ModuleTypeError,
)
from weft.selection import _plugin_kinds
from weft.wrappers import _FabricModule, _FabricOptimizer


def _check_types(accelerator: Any, strategy: Any, devices: Any, num_nodes: Any, precision: Any, plugins: Any) -> None:
    for name, value in (("accelerator", accelerator), ("strategy", strategy)):
        if not isinstance(value, str) and not _plugin_kinds(value):
            raise ConfigurationError(f"{name}={value!r}: pass a name (str) or a weft {name} plugin object")
    if isinstance(precision, bool) or not isinstance(precision, (str, int)) and not _plugin_kinds(precision):
        raise ConfigurationError(f"precision={precision!r}: pass a name such as '32-true' or 'bf16-mixed', or a precision plugin")
    # Wrong types are TypeErrors (as Lightning raises them), wrong values ValueErrors.
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        raise ConfigurationTypeError(f"num_nodes={num_nodes!r} must be a positive int")
    if num_nodes < 1:
        raise ConfigurationError(f"num_nodes={num_nodes!r} must be a positive int")
    if isinstance(devices, (bool, float)) or not isinstance(devices, (int, str, list, tuple)):
        raise ConfigurationTypeError(f"devices={devices!r}: pass an int, -1 for all, 'auto', a list of indices or '0,2'")
    if plugins is not None and not isinstance(plugins, (list, tuple)) and not _plugin_kinds(plugins):
        raise ConfigurationTypeError(f"plugins={plugins!r}: pass a plugin object or a list of them")
    for name, value in (("accelerator", accelerator), ("strategy", strategy), ("precision", precision)):
        kinds = set() if isinstance(value, (str, int)) else _plugin_kinds(value)
        if kinds and name not in kinds:
            # e.g. a precision plugin passed as strategy=: registered as the strategy, its hooks
            # would run twice and no strategy would be chosen.
            (kind, *_) = sorted(kinds)
            raise ConfigurationTypeError(
                f"{name}={value!r:.80} is not a {name} plugin (it implements the {' and '.join(sorted(kinds))} hooks): "
                f"pass it as {kind}=... (or in plugins=[...]), and give {name}= a name or a {name} plugin"
            )


_PLAIN_VALUES = (str, bytes, int, float, complex, bool, type(None))


def _check_callbacks(callbacks: Any) -> None:
    """Callbacks are objects whose methods ``fabric.call`` runs: refuse plain values and classes,
    which have no such methods (or only unbound ones) and would be skipped or fail at the first call."""
    given = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
    for callback in given if callbacks is not None else []:
        if isinstance(callback, type):
            raise ConfigurationTypeError(
                f"callbacks= holds the class {callback.__name__}, not an object: pass an instance, e.g. {callback.__name__}()"
            )
        if isinstance(callback, _PLAIN_VALUES):
            raise ConfigurationTypeError(
                f"callbacks= holds {callback!r:.60} ({type(callback).__name__}): pass objects whose methods "
                "fabric.call(name, ...) runs by name, or a list of them"
            )


def _an_instance(value: Any, base: type) -> str:
    """A hint for a class passed where an instance of ``base`` belongs."""
    if isinstance(value, type) and issubclass(value, base):
        return f" (the class {value.__name__} itself: pass an instance, e.g. {value.__name__}(...))"
    return ""


def _check_module(module: Any, what: str) -> None:
    if isinstance(module, _FabricModule):
        raise MisuseValueError(f"{what}(): this model was already set up by fabric.setup(); pass each model once")
    if not isinstance(module, nn.Module):
        raise ModuleTypeError(f"{what}() takes a torch.nn.Module first, got {type(module).__name__}{_an_instance(module, nn.Module)}")


def _check_optimizer(optimizer: Any) -> None:
    if isinstance(optimizer, _FabricOptimizer):
        raise MisuseValueError("this optimizer was already set up by fabric.setup(); pass each optimizer once")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise MisuseTypeError(
            f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}{_an_instance(optimizer, torch.optim.Optimizer)}"
        )


def _check_clip_value(name: str, value: Any) -> float:
    """``value`` as a float, refused when it is not a number, NaN, or negative (``norm_type`` aside).

    torch does not check them: a negative ``max_norm`` flips every gradient's sign, a negative
    ``clip_val`` sets every gradient to it, NaN makes every gradient NaN.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"clip_gradients({name}={value!r:.60}) must be a number") from None
    if number != number or (name != "norm_type" and number < 0):
        what = "a number of at least 0" if name != "norm_type" else "a number (or 'inf')"
        raise ConfigurationError(f"clip_gradients({name}={value!r}) must be {what}; torch would apply it unchecked")
    return number


def _backward_problem(tensor: Any, exc: Exception) -> Exception | None:
    """A weft error explaining why ``fabric.backward(tensor)`` failed with ``exc``, or ``None``
    when the failure is not one of the usual mistakes (it then propagates as it is)."""
    if not isinstance(tensor, torch.Tensor):
        return LossTypeError(
            f"fabric.backward() takes the loss tensor, got {type(tensor).__name__} ({tensor!r:.60}): pass the tensor the "
            "model's output was reduced to (not loss.item())"
        )
    text = str(exc)
    if "does not require grad" in text:
        return BackwardError(
            f"fabric.backward(loss): the loss (shape {tuple(tensor.shape)}) does not require grad, so there is nothing to "
            "differentiate. Compute it from the output of a model whose parameters require grad, outside torch.no_grad() "
            "and without .detach()."
        )
    if "only for scalar outputs" in text:
        return BackwardError(
            f"fabric.backward(loss): the loss has shape {tuple(tensor.shape)} ({tensor.numel()} elements); backward needs "
            "one number. Reduce it (e.g. loss.mean()), or pass gradient=... of the same shape."
        )
    if "backward through the graph a second time" in text:
        return BackwardError(
            "fabric.backward(loss): this loss's graph was already freed by an earlier backward. Compute the loss anew, "
            "or pass retain_graph=True to the first fabric.backward."
        )
    return None


def _check_launch_function(function: Any) -> None:
    """What Lightning checks of ``launch(function)``: callable, and able to receive the Fabric."""
    if not callable(function):
        raise MisuseTypeError(
            f"fabric.launch() takes a function, got {type(function).__name__} ({function!r:.60}). "
            "Pass the function itself: fabric.launch(train), not fabric.launch(train())."
        )
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to read (some builtins): let the call decide
        return
    if not parameters:
        raise MisuseTypeError(
            f"fabric.launch({getattr(function, '__name__', function)!r}): the function takes no argument, but it is "
            "called with the Fabric first: def train(fabric, ...)."
        )


def _check_save_filter(filter: Any, state: dict[str, Any]) -> None:
    if filter is None:
        return
    if not isinstance(filter, dict):
        raise MisuseTypeError(f"save(filter=...) takes a dict {{state key: keep(name, value)}}, got {type(filter).__name__}")
    unknown = sorted(map(str, set(filter) - set(state)))
    if unknown:
        raise MisuseValueError(f"save(filter=...) has key(s) {unknown} that are not in the state {sorted(map(str, state))}")
    for key, keep in filter.items():
        if not callable(keep):
            raise MisuseTypeError(f"save(filter={{{key!r}: ...}}) must map to a function keep(name, value), got {keep!r:.60}")


def _check_group(group: Any, what: str) -> None:
    """weft's collectives span all processes; refuse a sub-group rather than ignore it."""
    if group is None:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and group is dist.group.WORLD:
        return
    raise MisuseValueError(
        f"{what}(group={group!r}): weft's {what} spans all processes and cannot use a sub-group. Leave group out, or "
        f"call torch.distributed.{what}(..., group=...) yourself for that group."
    )
