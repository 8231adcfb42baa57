"""Whole training loops written for Lightning Fabric give the same numbers under weft, with the
import changed and nothing else: on one process and on two DDP processes."""

import pytest

from harness import broken_compare, compare

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("devices", [1, 2])
def test_kfold_loop(tmp_path, devices):
    compare("loop_kfold", tmp_path, ranks=devices, args=[str(devices)])


@pytest.mark.parametrize("devices", [1, 2])
def test_language_model_loop(tmp_path, devices):
    compare("loop_lm", tmp_path, ranks=devices, args=[str(devices)])


def test_kfold_loop_broken_variant_fails(tmp_path):
    message = broken_compare("loop_kfold", tmp_path, "sampler_whole_dataset", ranks=2, args=["2"])
    assert "val_loss" in message
