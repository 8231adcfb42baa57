"""Turn what users log into what an event file can hold: flat names, numbers and strings."""

from __future__ import annotations

import math
import numbers
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from weft.errors import MisuseTypeError, MisuseValueError


def as_dict(params: Any) -> dict[str, Any]:
    """Hyperparameters as a dict, from a mapping or an ``argparse.Namespace``."""
    if isinstance(params, Namespace):
        return vars(params).copy()
    if isinstance(params, Mapping):
        return dict(params)
    raise MisuseTypeError(
        f"log_hyperparams() needs a dict or an argparse.Namespace, got {type(params).__name__} ({params!r}); "
        "pass e.g. {'lr': 0.1} or vars(your_config)."
    )


def flatten(params: Mapping[str, Any], delimiter: str = "/", parent: str = "") -> dict[str, Any]:
    """``{"opt": {"lr": 0.1}}`` -> ``{"opt/lr": 0.1}``; Namespaces nest like dicts."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{parent}{delimiter}{key}" if parent else str(key)
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, delimiter, name))
        else:
            flat[name] = value
    return flat


def hparam_value(value: Any) -> bool | int | float | str:
    """A value TensorBoard's hparams dashboard can show; anything else as its ``str()``, as Lightning does."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "numel") and hasattr(value, "item") and value.numel() == 1:
        return value.item()  # one-element tensor or numpy array
    if isinstance(value, numbers.Number) and hasattr(value, "item"):
        return value.item()  # numpy scalar
    return str(value)


def scalar_value(name: str, value: Any) -> float:
    """A logged metric as a float, or an error naming the metric and what to pass instead.

    One-element tensors and numpy scalars are accepted (``fabric.log`` converts tensors
    already; a logger used on its own may still be handed one).
    """
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "numel") and hasattr(value, "item"):
        if value.numel() != 1:
            raise MisuseValueError(
                f"metric {name!r} is a tensor of shape {tuple(value.shape)}; a scalar metric needs exactly one element "
                "(log .mean() or one value per name)."
            )
        item = value.item()
        if isinstance(item, numbers.Real):
            return float(item)
    raise MisuseTypeError(
        f"metric {name!r} has value {value!r} of type {type(value).__name__}; log a number or a one-element tensor "
        "(a dict of numbers is logged as one chart with several lines)."
    )


def check_step(step: Any) -> int | None:
    """``step`` as an int (or ``None``); a float or negative step would put points on the wrong x position."""
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        if hasattr(step, "numel") and hasattr(step, "item") and step.numel() == 1 and isinstance(step.item(), numbers.Integral):
            step = step.item()
        elif isinstance(step, float) and math.isfinite(step) and step.is_integer():
            step = int(step)
        else:
            raise MisuseTypeError(f"step={step!r} ({type(step).__name__}) is not an integer; pass the step as an int, e.g. step=global_step.")
    step = int(step)
    if step < 0:
        raise MisuseValueError(f"step={step} is negative; steps count from 0.")
    return step
