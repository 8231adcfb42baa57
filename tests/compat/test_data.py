"""Data loading and seeding under DDP match Lightning Fabric.

Each feature has a test that the scenario's observations agree, and a test that they stop
agreeing when weft is deliberately broken (``breakages_data.py``), so each comparison is
shown to check something.
"""

import pytest
from harness import broken_compare, compare

pytestmark = pytest.mark.slow

# ---------------------------------------------------------------- samplers


def test_custom_samplers_are_sharded(tmp_path):
    compare("samplers", tmp_path, ranks=2)


def test_whole_dataset_sampler_breaks_the_samplers_comparison(tmp_path):
    message = broken_compare("samplers", tmp_path, "sampler_whole_dataset", ranks=2)
    assert "kfold/0/train_only_on_its_subset" in message


# ---------------------------------------------------------------- loader subclasses, batch samplers, epochs


def test_loader_subclasses_and_batch_samplers_match(tmp_path):
    compare("dataloaders", tmp_path, ranks=2)


def test_epoch_missing_a_batch_samplers_sampler_breaks_the_comparison(tmp_path):
    message = broken_compare("dataloaders", tmp_path, "batch_sampler_epoch_missed", ranks=2)
    assert "distributed_in_batch_sampler/epochs[1]" in message


def test_flattened_loader_subclass_breaks_the_comparison(tmp_path):
    message = broken_compare("dataloaders", tmp_path, "loader_subclass_flattened", ranks=2)
    assert "subclass/attributes" in message and "subclass/class" in message


def test_refused_custom_batch_sampler_breaks_the_comparison(tmp_path):
    message = broken_compare("dataloaders", tmp_path, "custom_batch_sampler_refused", ranks=2)
    assert "batch_sampler/setup" in message and "batch_sampler/kept" in message


# ---------------------------------------------------------------- seed_everything and workers


def test_seeding_matches(tmp_path):
    compare("seeding", tmp_path, ranks=2)


def test_unseeded_workers_break_the_comparison(tmp_path):
    message = broken_compare("seeding", tmp_path, "seed_workers_ignored", ranks=2)
    assert "workers/seeded" in message and "workers/user_init_kept" not in message


def test_replaced_user_worker_init_fn_breaks_the_comparison(tmp_path):
    message = broken_compare("seeding", tmp_path, "user_worker_init_fn_replaced", ranks=2)
    assert "workers/user_init_kept" in message and "workers/seeded" not in message


def test_silent_seed_breaks_the_comparison(tmp_path):
    message = broken_compare("seeding", tmp_path, "seed_not_reported", ranks=2)
    assert "given/verbose_output" in message and "quiet/verbose_output" not in message


def test_fabric_seed_without_workers_default_breaks_the_comparison(tmp_path):
    message = broken_compare("seeding", tmp_path, "fabric_seed_workers_off", ranks=2)
    assert "signature/fabric_method" in message and "workers/fabric_default" in message
