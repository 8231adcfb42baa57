"""Refusing, at save time, state that the default load could never restore.

``torch.save`` pickles almost anything, but ``fabric.load`` reads with
``torch.load(weights_only=True)``, which accepts only tensors, plain containers and the
globals torch allows (plus those registered with ``torch.serialization.add_safe_globals``).
A module nested in a dict, a meta tensor, a lambda or a custom object would save fine and
fail on the load a long run later. :func:`check_restorable` finds them before anything
is written, by walking the containers (never the tensors' data) and asking torch's own
restricted unpickler about each other kind of value once per type.

.. versionadded:: 0.2
"""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import Any

import torch

from weft.errors import CheckpointError

_PLAIN = (str, bytes, int, float, bool, complex, type(None), torch.dtype, torch.device, torch.Size)
_CONTAINERS = (dict, OrderedDict, list, tuple, set, frozenset)
# (type, dtype) -> None when torch.load(weights_only=True) accepts such a value, else torch's reason.
_verdicts: dict[tuple[type, str, int], str | None] = {}


def check_restorable(state: dict[str, Any]) -> None:
    """Raise if some value of ``state`` could be saved but not restored by the default load.

    Top-level values with ``state_dict()`` (models, optimizers, loaders...) are saved as
    their state dict and pass; everything else must load under ``weights_only=True``.

    :raises CheckpointError: naming the key path (``state['extras']['ema']``) and the fix.
    """
    for key, value in state.items():
        where = f"state[{key!r}]"
        if isinstance(value, torch.nn.Module):
            _check_module(value, where)
        elif hasattr(value, "state_dict") and callable(value.state_dict):
            continue
        else:
            _check_value(value, where, 0)


def _check_module(module: torch.nn.Module, where: str) -> None:
    if not any(t.is_meta for t in module.parameters()) and not any(t.is_meta for t in module.buffers()):
        return  # the usual case, without building names
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if tensor.is_meta:
            raise CheckpointError(
                f"Cannot save {where}: its {name!r} is on the meta device (it has no values yet). "
                "Materialise the model first (module.to_empty(device=...) and initialise it, or set it up "
                "with fabric.setup / load a checkpoint into it) before saving."
            )


def _check_value(value: Any, where: str, depth: int) -> None:
    kind = type(value)
    if kind in _PLAIN:
        return
    if isinstance(value, torch.Tensor) and kind in (torch.Tensor, torch.nn.Parameter):
        if value.is_meta:
            raise CheckpointError(
                f"Cannot save {where}: it is a tensor on the meta device (it has no values). Materialise it "
                "first (e.g. torch.empty_like(t, device='cpu') and fill it), or leave it out of the state."
            )
        return
    if depth > 200:
        raise CheckpointError(f"Cannot save {where}: the state nests containers more than 200 levels deep.")
    if kind in _CONTAINERS:
        if kind in (set, frozenset):
            _require_loadable(kind(), where)  # does torch's unpickler rebuild the container itself?
        if isinstance(value, dict):
            for k, v in value.items():
                _check_value(k, f"{where} (a key)", depth + 1)
                _check_value(v, f"{where}[{k!r}]", depth + 1)
        else:
            for i, v in enumerate(value):
                _check_value(v, f"{where}[{i}]" if kind in (list, tuple) else f"{where} (an element)", depth + 1)
        return
    if isinstance(value, torch.nn.Module) or isinstance(value, torch.optim.Optimizer) or hasattr(value, "state_dict"):
        raise CheckpointError(
            f"Cannot save {where}: it is a {kind.__name__}, which fabric.save turns into its state_dict() only "
            "at the top level of the state. Put it at the top level of the state (state = {..., 'name': obj}), "
            "or store its state_dict() here and load it back with load_state_dict()."
        )
    _require_loadable(value, where)


def _require_loadable(value: Any, where: str) -> None:
    kind = type(value)
    # Keyed by the number of user-registered safe globals too: registering one changes the answer.
    key = (kind, str(getattr(value, "dtype", "")), len(torch.serialization.get_safe_globals()))
    if key not in _verdicts:
        _verdicts[key] = _weights_only_verdict(value)
    reason = _verdicts[key]
    if reason is not None and callable(value):
        raise CheckpointError(
            f"Cannot save {where}: it is a {kind.__name__} (code, not data), which torch.load(weights_only=True), "
            "used by fabric.load, cannot rebuild. Store the data it needs instead (numbers, strings, tensors)."
        )
    if reason is not None:
        name = f"{kind.__module__}.{kind.__qualname__}"
        raise CheckpointError(
            f"Cannot save {where}: a {name} cannot be loaded back with torch.load(weights_only=True), which "
            f"fabric.load uses ({reason}). Convert it to plain types (dict, list, numbers, strings, tensors) or "
            f"store its state_dict(); if the class is safe to unpickle, register it with "
            f"torch.serialization.add_safe_globals([{kind.__qualname__}])."
        )


def _weights_only_verdict(value: Any) -> str | None:
    """``None`` when ``value`` round-trips through torch.save and torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    try:
        torch.save(value, buffer)
    except Exception as exc:  # noqa: BLE001 - whatever pickling raises, the value cannot be saved
        return f"it cannot even be pickled: {type(exc).__name__}: {exc}"
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the restricted unpickler's refusal, in its words
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # torch's message opens with generic advice; the line naming the refused global is the useful one.
        useful = [line for line in lines if "Unsupported" in line or "WeightsUnpickler" in line]
        return ((useful or lines or [type(exc).__name__])[0])[:300]
    return None
