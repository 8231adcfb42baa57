"""The accelerator conformance suite, collected by ``pytest --weft-accelerator=NAME`` (without ``--weft-strategy``).

Everything runs in the pytest process:

- static: the name loads through the registry, the factory returns a new object each call,
  every ``weft_*`` method is a real hook with arguments its specification has, and the four
  required hooks exist;
- answers: ``is_available`` is a bool, ``device_count`` an int >= 0, ``auto_priority`` an int
  and ``process_group_backend`` a str when implemented;
- ``parse_devices`` answers ``"auto"`` and ``1`` with a list of int indices (one for ``1``) and
  refuses ``"banana"`` and ``0`` with :class:`weft.errors.ConfigurationError`;
- on a machine where the accelerator is available: ``get_device`` gives a ``torch.device`` a
  tensor can be created on, ``setup_device`` and ``teardown`` run, and ``Fabric(accelerator=NAME,
  devices=1)`` puts a tensor on that device. Where it is not available these are skipped, saying so.
"""

from __future__ import annotations

from typing import Any

import pytest

from weft.testing import plugin_checks as checks
from weft.testing.plugin_checks import KitFailure

KIND = "accelerator"
#: ``devices=`` values no accelerator can honour.
BAD_DEVICES = ("banana", 0)


def check_answers(name: str) -> bool:
    """``is_available``, ``device_count`` and the optional hooks answer with the documented types.

    :returns: whether the accelerator is available here.
    """
    plugin, where = checks.create(KIND, name), checks.describe(KIND, name)
    available = checks.call(KIND, name, plugin, "weft_accelerator_is_available")
    if not isinstance(available, bool):
        raise KitFailure(f"hook weft_accelerator_is_available of {where} returned {available!r} ({checks.type_name(available)}); expected a bool")
    count = checks.call(KIND, name, plugin, "weft_accelerator_device_count")
    if not checks.is_int(count) or count < 0:
        raise KitFailure(f"hook weft_accelerator_device_count of {where} returned {count!r} ({checks.type_name(count)}); expected an int >= 0")
    if checks.implements(plugin, "weft_accelerator_auto_priority"):
        priority = checks.call(KIND, name, plugin, "weft_accelerator_auto_priority")
        if not checks.is_int(priority):
            raise KitFailure(f"hook weft_accelerator_auto_priority of {where} returned {priority!r}; expected an int (cpu answers 0)")
    return available


def check_parse_devices(name: str, available: bool) -> list[int]:
    """``"auto"`` and ``1`` are understood; values that cannot work raise ConfigurationError.

    :returns: the indices ``devices=1`` selects.
    """
    from weft.errors import ConfigurationError

    plugin, where = checks.create(KIND, name), checks.describe(KIND, name)
    hook = f"hook weft_accelerator_parse_devices of {where}"
    answers = {}
    for devices in ("auto", 1) if available else ():
        indices = checks.call(KIND, name, plugin, "weft_accelerator_parse_devices", devices=devices)
        if not isinstance(indices, list) or not indices or not all(checks.is_int(i) and i >= 0 for i in indices):
            raise KitFailure(f"{hook} returned {indices!r} for devices={devices!r}; expected a non-empty list of local device indices (ints >= 0)")
        answers[devices] = indices
    if available and len(answers[1]) != 1:
        raise KitFailure(f"{hook} returned {answers[1]!r} for devices=1; expected one index")
    from weft.testing.managers import plugin_manager

    manager = plugin_manager(plugin, check=False)
    for devices in BAD_DEVICES:
        try:
            result = manager.hook.weft_accelerator_parse_devices(devices=devices)
        except ConfigurationError:
            continue
        except Exception as exc:  # noqa: BLE001
            raise KitFailure(
                f"{hook} raised {type(exc).__name__}: {exc} for devices={devices!r}; raise weft.errors.ConfigurationError "
                "saying which values work"
            ) from None
        raise KitFailure(f"{hook} accepted devices={devices!r} (returned {result!r}); raise weft.errors.ConfigurationError saying which values work")
    return answers.get(1, [])


def check_device(name: str, indices: list[int]) -> Any:
    """``get_device`` gives a usable ``torch.device``; ``setup_device`` / ``teardown`` / the backend hook run."""
    import torch

    plugin, where = checks.create(KIND, name), checks.describe(KIND, name)
    device = checks.call(KIND, name, plugin, "weft_accelerator_get_device", index=indices[0])
    if not isinstance(device, torch.device):
        raise KitFailure(f"hook weft_accelerator_get_device of {where} returned {device!r} ({checks.type_name(device)}) for index {indices[0]}; expected a torch.device")
    try:
        landed = torch.ones(1, device=device).device
    except Exception as exc:  # noqa: BLE001
        raise KitFailure(f"hook weft_accelerator_get_device of {where}: a tensor cannot be created on {device} ({type(exc).__name__}: {exc})") from None
    if landed.type != device.type:
        raise KitFailure(f"hook weft_accelerator_get_device of {where}: a tensor created on {device} is on {landed}")
    checks.call(KIND, name, plugin, "weft_accelerator_setup_device", device=device)
    if checks.implements(plugin, "weft_accelerator_process_group_backend"):
        backend = checks.call(KIND, name, plugin, "weft_accelerator_process_group_backend", device=device)
        if not isinstance(backend, str) or not backend:
            raise KitFailure(f"hook weft_accelerator_process_group_backend of {where} returned {backend!r}; expected a backend name such as 'gloo' or 'nccl'")
    checks.call(KIND, name, plugin, "weft_accelerator_teardown")
    return device


def check_fabric_moves_tensors(name: str, device: Any) -> None:
    """``Fabric(accelerator=NAME, devices=1)`` computes on the device the accelerator names."""
    import torch

    from weft import Fabric

    where = checks.describe(KIND, name)
    try:
        fabric = Fabric(accelerator=name, devices=1)
        moved = fabric.to_device(torch.ones(2))
    except Exception as exc:  # noqa: BLE001
        raise KitFailure(f"{where}: Fabric(accelerator={name!r}, devices=1) and fabric.to_device raised {type(exc).__name__}: {exc}") from None
    if moved.device.type != device.type or fabric.device.type != device.type:
        raise KitFailure(f"{where}: get_device names {device}, but Fabric(accelerator={name!r}) has device {fabric.device} and moved a tensor to {moved.device}")


# ---------------------------------------------------------------------- the pytest suite


@pytest.fixture(scope="session")
def accelerator_name(request: pytest.FixtureRequest) -> str:
    name = request.config.getoption("weft_accelerator", default=None)
    if not name or request.config.getoption("weft_strategy", default=None):
        pytest.skip("the weft accelerator suite runs with --weft-accelerator=NAME and no --weft-strategy")
    return name


@pytest.fixture(scope="session")
def available(accelerator_name: str) -> Any:
    """Whether the accelerator is available here (or why asking failed)."""
    return checks.attempt(check_answers, accelerator_name)


@pytest.fixture(scope="session")
def device(accelerator_name: str, available: Any) -> Any:
    """The device ``devices=1`` selects (or why getting it failed); skips where the accelerator is unavailable."""
    if checks.unwrap(available) is False:
        pytest.skip(f"{checks.describe(KIND, accelerator_name)} is not available on this machine (weft_accelerator_is_available is False)")

    def parse_then_get() -> Any:
        return check_device(accelerator_name, check_parse_devices(accelerator_name, True))

    return checks.attempt(parse_then_get)


def test_accelerator_is_installed_and_compatible(accelerator_name: str) -> None:
    checks.report(checks.check_loads, KIND, accelerator_name)


def test_accelerator_hook_names_are_weft_hooks(accelerator_name: str) -> None:
    checks.report(checks.check_hook_names, KIND, accelerator_name, checks.report(checks.create, KIND, accelerator_name))


def test_accelerator_hooks_match_the_specifications(accelerator_name: str) -> None:
    checks.report(checks.check_signatures, KIND, accelerator_name, checks.report(checks.create, KIND, accelerator_name))


def test_accelerator_required_hooks_are_implemented(accelerator_name: str) -> None:
    checks.report(checks.check_required, KIND, accelerator_name, checks.report(checks.create, KIND, accelerator_name))


def test_accelerator_availability_and_count(available: Any) -> None:
    checks.unwrap(available)


def test_accelerator_parse_devices(accelerator_name: str, available: Any) -> None:
    checks.report(check_parse_devices, accelerator_name, checks.unwrap(available))


def test_accelerator_get_device_and_setup(device: Any) -> None:
    checks.unwrap(device)


def test_accelerator_fabric_moves_tensors_to_the_device(accelerator_name: str, device: Any) -> None:
    checks.report(check_fabric_moves_tensors, accelerator_name, checks.unwrap(device))
