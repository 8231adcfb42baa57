"""The precision conformance suite, collected by ``pytest --weft-precision=NAME`` (without ``--weft-strategy``).

A precision is one process's business, so everything runs in the pytest process, on the
CPU, with one device:

- static: the name loads through the registry, the factory returns a new object each call,
  every ``weft_*`` method is a real hook (a misspelt one is named with the hook it probably
  meant) with arguments its specification has, and ``weft_precision_dtypes`` exists;
- answers: ``weft_precision_dtypes`` returns a :class:`weft.records.PrecisionDtypes` of
  ``torch.dtype``s, the context hooks return context managers, ``weft_precision_state_dict``
  a dict or ``None``;
- behaviour: the dtypes it declares are the ones that happen. After ``fabric.setup`` the
  parameters have the ``param`` dtype; inside the forward a layer's output has the
  ``compute`` dtype (observed with a forward hook); floating outputs come back in the
  compute dtype, or in float32 when compute is narrower (so a loss accumulates in at least
  float32); ``fabric.backward`` and a step give finite, changed parameters; the state
  survives ``torch.save`` / ``torch.load(weights_only=True)`` and ``load_state_dict`` on a
  new object.

Each check is a function raising :class:`~weft.testing.plugin_checks.KitFailure`, usable
outside pytest too.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest

from weft.testing import plugin_checks as checks
from weft.testing.plugin_checks import KitFailure

KIND = "precision"
LEARNING_RATE = 0.1


# ---------------------------------------------------------------------- checks (plain functions)


def check_answers(name: str) -> None:
    """The hooks answer with the documented types (on a plugin inside a Fabric, as weft calls it)."""
    import torch

    from weft.records import PrecisionDtypes

    fabric = _fabric(name)
    plugin, where = fabric.precision, checks.describe(KIND, name)
    dtypes = checks.call(KIND, name, plugin, "weft_precision_dtypes")
    if not isinstance(dtypes, PrecisionDtypes):
        raise KitFailure(f"hook weft_precision_dtypes of {where} returned {dtypes!r} ({checks.type_name(dtypes)}); expected a weft.records.PrecisionDtypes")
    for field in ("param", "compute", "reduce"):
        value = getattr(dtypes, field)
        if not isinstance(value, torch.dtype) or not value.is_floating_point:
            raise KitFailure(f"hook weft_precision_dtypes of {where}: {field}={value!r} is not a floating torch.dtype")
    if not isinstance(dtypes.autocast, bool):
        raise KitFailure(f"hook weft_precision_dtypes of {where}: autocast={dtypes.autocast!r} is not a bool")
    for hook in ("weft_precision_forward_context", "weft_precision_module_init_context"):
        if checks.implements(plugin, hook):
            context = checks.call(KIND, name, plugin, hook)
            if not (hasattr(context, "__enter__") and hasattr(context, "__exit__")):
                raise KitFailure(f"hook {hook} of {where} returned {context!r} ({checks.type_name(context)}); expected a context manager")
    if checks.implements(plugin, "weft_precision_state_dict"):
        state = checks.call(KIND, name, plugin, "weft_precision_state_dict")
        if state is not None and not isinstance(state, dict):
            raise KitFailure(f"hook weft_precision_state_dict of {where} returned {checks.type_name(state)}; expected a dict or None")


def observe_training(name: str) -> dict[str, Any]:
    """One setup, forward, backward and step under the precision; what was seen on the way."""
    import torch

    fabric = _fabric(name)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    activations: list[Any] = []
    model[0].register_forward_hook(lambda module, args, output: activations.append(output.dtype))
    try:
        wrapped, wrapped_optimizer = fabric.setup(model, optimizer)
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        output = wrapped(torch.randn(3, 4))
        fabric.backward(output.float().pow(2).mean())
        wrapped_optimizer.step()
    except Exception as exc:  # noqa: BLE001 - a training step failing is the finding
        raise KitFailure(f"{checks.describe(KIND, name)}: setup, forward, backward and step on the CPU raised {type(exc).__name__}: {exc}") from None
    return {
        "declared": fabric.precision_dtypes,
        "params": {n: p.dtype for n, p in model.named_parameters()},
        "activation": activations[0] if activations else None,
        "output": output.dtype,
        "before": params,
        "after": {n: p.detach().clone() for n, p in model.named_parameters()},
        "fabric": fabric,
    }


def expected_output_dtype(compute: Any) -> Any:
    """Floating outputs come back in the compute dtype, or in float32 when compute is narrower."""
    import torch

    return compute if torch.finfo(compute).bits >= 32 else torch.float32


def check_dtypes_applied(name: str, seen: dict[str, Any]) -> None:
    """What ``weft_precision_dtypes`` declares is what setup and forward did."""
    where, declared = checks.describe(KIND, name), seen["declared"]
    wrong = {n: d for n, d in seen["params"].items() if d != declared.param}
    if wrong:
        raise KitFailure(
            f"{where} declares param={declared.param} (weft_precision_dtypes), but after fabric.setup the parameters are "
            f"{wrong}; convert them in weft_precision_convert_module, or declare the dtype they keep"
        )
    if seen["activation"] != declared.compute:
        raise KitFailure(
            f"{where} declares compute={declared.compute} (weft_precision_dtypes), but inside the forward a Linear layer's "
            f"output was {seen['activation']}; run the forward in that dtype (weft_precision_forward_context, e.g. "
            "torch.autocast, or weft_precision_convert_module/convert_input), or declare the dtype it computes in"
        )
    want = expected_output_dtype(declared.compute)
    if seen["output"] != want:
        raise KitFailure(
            f"{where}: the forward's floating output came back as {seen['output']}; expected {want} (the compute dtype, or "
            "float32 when compute is narrower, so losses accumulate in at least float32): see weft_precision_convert_output"
        )


def check_step_is_finite(name: str, seen: dict[str, Any]) -> None:
    """``fabric.backward`` and the optimizer step change the parameters, and leave them finite."""
    import torch

    where = checks.describe(KIND, name)
    not_finite = [n for n, p in seen["after"].items() if not torch.isfinite(p).all()]
    if not_finite:
        raise KitFailure(f"{where}: after fabric.backward and optimizer.step the parameters {not_finite} hold inf or NaN")
    if all(torch.equal(seen["before"][n], p) for n, p in seen["after"].items()):
        raise KitFailure(
            f"{where}: fabric.backward and optimizer.step left every parameter unchanged (lr={LEARNING_RATE}); "
            "a precision that skips steps must do so only for non-finite gradients"
        )


def check_state_round_trip(name: str, fabric: Any) -> None:
    """The precision's state goes through a checkpoint file and into a new plugin object unchanged."""
    import torch

    where, plugin = checks.describe(KIND, name), fabric.precision
    saves, loads = checks.implements(plugin, "weft_precision_state_dict"), checks.implements(plugin, "weft_precision_load_state_dict")
    if saves != loads:
        present, absent = ("weft_precision_state_dict", "weft_precision_load_state_dict")[:: 1 if saves else -1]
        raise KitFailure(f"{where} implements {present} without {absent}: its state would be saved and never restored, or the reverse")
    if not saves:
        return
    state = checks.call(KIND, name, plugin, "weft_precision_state_dict")
    if state is None:
        return
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        loaded = torch.load(buffer, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise KitFailure(
            f"hook weft_precision_state_dict of {where}: its state cannot be read back with torch.load(weights_only=True), "
            f"as fabric.load reads checkpoints ({type(exc).__name__}: {_first_line(exc)}); keep to tensors, numbers, strings and containers"
        ) from None
    fresh = _fabric(name).precision
    checks.call(KIND, name, fresh, "weft_precision_load_state_dict", state=loaded)
    again = checks.call(KIND, name, fresh, "weft_precision_state_dict")
    if not _same(again, state):
        raise KitFailure(f"{where}: state {state!r} was loaded into a new object with weft_precision_load_state_dict, which then returned {again!r}")


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def _fabric(name: str) -> Any:
    from weft import Fabric

    try:
        return Fabric(accelerator="cpu", devices=1, precision=name)
    except Exception as exc:  # noqa: BLE001
        raise KitFailure(f"{checks.describe(KIND, name)}: Fabric(accelerator='cpu', devices=1, precision={name!r}) raised {type(exc).__name__}: {exc}") from None


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    with contextlib.suppress(Exception):
        return bool(a == b)
    return False


# ---------------------------------------------------------------------- the pytest suite


@pytest.fixture(scope="session")
def precision_name(request: pytest.FixtureRequest) -> str:
    name = request.config.getoption("weft_precision", default=None)
    if not name or request.config.getoption("weft_strategy", default=None):
        pytest.skip("the weft precision suite runs with --weft-precision=NAME and no --weft-strategy")
    return name


@pytest.fixture(scope="session")
def training(precision_name: str) -> dict[str, Any]:
    """The one training step every behaviour check reads (set up once per session)."""
    def static_then_train() -> dict[str, Any]:
        checks.check_static(KIND, precision_name)
        return observe_training(precision_name)

    return checks.attempt(static_then_train)


def test_precision_is_installed_and_compatible(precision_name: str) -> None:
    checks.report(checks.check_loads, KIND, precision_name)


def test_precision_hook_names_are_weft_hooks(precision_name: str) -> None:
    checks.report(checks.check_hook_names, KIND, precision_name, checks.report(checks.create, KIND, precision_name))


def test_precision_hooks_match_the_specifications(precision_name: str) -> None:
    checks.report(checks.check_signatures, KIND, precision_name, checks.report(checks.create, KIND, precision_name))


def test_precision_required_hooks_are_implemented(precision_name: str) -> None:
    checks.report(checks.check_required, KIND, precision_name, checks.report(checks.create, KIND, precision_name))


def test_precision_hooks_answer_with_the_documented_types(precision_name: str) -> None:
    checks.report(check_answers, precision_name)


def test_precision_declared_dtypes_are_applied(precision_name: str, training: dict[str, Any]) -> None:
    checks.report(check_dtypes_applied, precision_name, checks.unwrap(training))


def test_precision_backward_and_step_are_finite(precision_name: str, training: dict[str, Any]) -> None:
    checks.report(check_step_is_finite, precision_name, checks.unwrap(training))


def test_precision_state_dict_round_trips(precision_name: str, training: dict[str, Any]) -> None:
    checks.report(check_state_round_trip, precision_name, checks.unwrap(training)["fabric"])
