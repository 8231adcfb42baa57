"""devices= parsing for GPU accelerators, and the errors users see."""

from __future__ import annotations

import pytest

from weft.errors import ConfigurationError
from weft_accelerators.cuda import CUDAAccelerator, visibility_hint
from weft_accelerators.devices import parse_indices


@pytest.mark.parametrize(
    "devices, expected",
    [
        (1, [0]),
        (2, [0, 1]),
        ("2", [0, 1]),
        (-1, [0, 1]),
        ("-1", [0, 1]),
        ("auto", [0, 1]),
        ([1], [1]),
        ([1, 0], [1, 0]),
        ((0, 1), [0, 1]),
        ("0,1", [0, 1]),
        ("1,", [1]),
        ("[0, 1]", [0, 1]),
    ],
)
def test_devices_values_resolve_to_local_indices(devices, expected):
    assert parse_indices(devices, 2, "cuda") == expected


def test_asking_for_more_devices_than_exist_says_how_many_were_found():
    with pytest.raises(ConfigurationError, match=r"devices=4 asks for 4 cuda devices, but only 2 were found.*devices=2"):
        parse_indices(4, 2, "cuda")
    with pytest.raises(ConfigurationError, match="only 1 was found"):
        parse_indices("3", 1, "mps")


@pytest.mark.parametrize("devices, missing", [([0, 3], "device 3,"), ("0,2", "device 2,"), ([2, 5], "devices 2, 5,")])
def test_naming_a_device_index_that_does_not_exist_is_rejected(devices, missing):
    with pytest.raises(ConfigurationError, match=rf"names cuda {missing} but only 2 were found \(indices 0..1\)"):
        parse_indices(devices, 2, "cuda")


@pytest.mark.parametrize("devices", [1, -1, "auto", [0], "0,1"])
def test_no_device_at_all_is_said_plainly(devices):
    with pytest.raises(ConfigurationError, match="No cuda device was found"):
        parse_indices(devices, 0, "cuda")


@pytest.mark.parametrize(
    "devices, match",
    [
        (0, "must be a positive number"),
        (-2, "must be a positive number"),
        ("two", "not understood"),
        ("0,x", "not a list of device indices"),
        ([0, 0], "lists a device twice"),
        ([-1], "non-negative device indices"),
        ([], "non-negative device indices"),
        (1.5, "not understood"),
        (True, "not understood"),
    ],
)
def test_malformed_devices_values_are_rejected(devices, match):
    with pytest.raises(ConfigurationError, match=match):
        parse_indices(devices, 2, "cuda")


def test_errors_mention_cuda_visible_devices_when_it_is_set(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    with pytest.raises(ConfigurationError, match=r"CUDA_VISIBLE_DEVICES='3,5' limits what this process sees"):
        parse_indices(4, 2, "cuda", visibility_hint())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visibility_hint() == ""


def test_cuda_hook_counts_visible_devices(monkeypatch):
    """The hook parses against torch's count of visible devices (0 on a machine without CUDA)."""
    import torch

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    accelerator = CUDAAccelerator()
    count = torch.cuda.device_count()
    assert accelerator.weft_accelerator_device_count() == count
    if count == 0:
        with pytest.raises(ConfigurationError, match="No cuda device was found.*CUDA_VISIBLE_DEVICES=''"):
            accelerator.weft_accelerator_parse_devices(devices=1)
