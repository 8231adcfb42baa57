"""Data loading under DDP matches Lightning Fabric."""

import pytest

from harness import broken_compare, compare

pytestmark = pytest.mark.slow


def test_custom_samplers_are_sharded(tmp_path):
    compare("samplers", tmp_path / "ok", ranks=2)


def test_custom_samplers_broken_variant_fails(tmp_path):
    message = broken_compare("samplers", tmp_path / "broken", "sampler_whole_dataset", ranks=2)
    assert "subset_random" in message
