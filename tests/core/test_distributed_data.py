"""Splitting loaders between ranks and seeding, where weft goes beyond Lightning Fabric or
guards against a silently wrong loader (the rest is compared with Lightning in tests/compat).

The ranks' loaders are built in one process: ``with_distributed_sampler`` only needs the
``num_replicas``/``rank`` a strategy passes it.
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, SubsetRandomSampler

from weft import Fabric
from weft.errors import ConfigurationError, DataLoaderSetupError
from weft.utilities.data import ShardedSampler, with_distributed_sampler
from weft.utilities.seed import seed_everything, seed_worker
from weft.wrappers import _FabricDataLoader

DATA = torch.arange(20)


@pytest.fixture(autouse=True)
def restore_seed_environment(monkeypatch):
    """seed_everything writes WEFT_GLOBAL_SEED/WEFT_SEED_WORKERS: put them back after each test."""
    import os

    for name in ("WEFT_GLOBAL_SEED", "WEFT_SEED_WORKERS"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.setenv(name, "0")
            monkeypatch.delenv(name)


def per_rank(loader, world=2):
    return [with_distributed_sampler(loader, {"num_replicas": world, "rank": rank}) for rank in range(world)]


def epoch(loader, seed=1):
    torch.manual_seed(seed)  # every rank's global generator agrees, as after seed_everything
    return [batch.tolist() for batch in loader]


def assert_split(shares, expected):
    flat = [sorted(i for batch in share for i in batch) for share in shares]
    assert not set(flat[0]) & set(flat[1]), "two ranks got the same samples"
    assert sorted(flat[0] + flat[1]) == sorted(expected)


def test_a_random_sampler_inside_a_custom_batch_sampler_still_shuffles():
    # Lightning replaces the batch sampler's sampler with a non-shuffling DistributedSampler.
    class Labelled(BatchSampler):
        pass

    loaders = per_rank(DataLoader(DATA, batch_sampler=Labelled(RandomSampler(DATA), 4, False)))
    assert all(type(loader.batch_sampler) is Labelled for loader in loaders)
    shares = [epoch(loader) for loader in loaders]
    assert_split(shares, range(20))
    assert [i for batch in shares[0] for i in batch] != sorted(i for batch in shares[0] for i in batch)
    assert all(len(batch) == 4 for batch in shares[0][:-1])


def test_an_explicit_plain_batch_sampler_keeps_its_batches():
    # Lightning rebuilds this loader with batch_size=None: it stops batching.
    loaders = per_rank(DataLoader(DATA, batch_sampler=BatchSampler(SequentialSampler(DATA), 3, drop_last=True)))
    shares = [epoch(loader) for loader in loaders]
    assert shares == [[[0, 2, 4], [6, 8, 10], [12, 14, 16]], [[1, 3, 5], [7, 9, 11], [13, 15, 17]]]  # drop_last kept


def test_a_random_sampler_with_replacement_is_split_not_replaced():
    # Lightning puts a DistributedSampler over the whole dataset in its place (20 samples, not 6).
    loaders = per_rank(DataLoader(DATA, batch_size=2, sampler=RandomSampler(DATA, replacement=True, num_samples=6)))
    assert all(isinstance(loader.sampler, ShardedSampler) for loader in loaders)
    assert [len(loader) for loader in loaders] == [2, 2]


def test_subset_epochs_reshuffle_and_agree_between_ranks():
    loaders = per_rank(DataLoader(DATA, batch_size=2, sampler=SubsetRandomSampler(range(10))))
    first = [epoch(loader, seed=1) for loader in loaders]
    second = [epoch(loader, seed=2) for loader in loaders]
    assert_split(first, range(10))
    assert_split(second, range(10))
    assert first != second


def test_sharded_sampler_passes_the_epoch_on():
    class Told(SequentialSampler):
        epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

    inner = Told(DATA)
    sampler = ShardedSampler(inner, num_replicas=2, rank=1)
    sampler.set_epoch(3)
    assert inner.epoch == 3 and sampler.epoch == 3
    assert list(sampler) == list(range(1, 20, 2))


def test_attributes_set_after_construction_survive_the_rebuild():
    class Tagged(DataLoader):
        def __init__(self, dataset, tag, **kwargs):
            super().__init__(dataset, **kwargs)
            self.tag = tag

    loader = Tagged(DATA, "train", batch_size=4, shuffle=True)
    loader.note = "set later"
    rebuilt = per_rank(loader)[0]
    assert type(rebuilt) is Tagged and rebuilt.tag == "train" and rebuilt.note == "set later"
    assert rebuilt.batch_size == 4 and rebuilt.sampler.shuffle


def test_a_constructor_argument_that_cannot_be_read_back_is_refused():
    class Hidden(DataLoader):
        def __init__(self, dataset, augment=False, **kwargs):
            super().__init__(dataset, **kwargs)
            self._augment = augment  # rebuilt without it, the loader would silently not augment

    with pytest.raises(DataLoaderSetupError, match="use_distributed_sampler=False") as caught:
        per_rank(Hidden(DATA, augment=True, batch_size=2))
    assert "_augment" in str(caught.value) and isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    "loader, fragment",
    [
        (DataLoader(DATA, sampler=type("Endless", (), {"__iter__": lambda self: iter(range(20))})()), "has no len()"),
        (DataLoader(DATA, batch_sampler=[[0, 1], [2, 3]]), "has no `sampler` attribute"),
    ],
    ids=["sampler-without-len", "batch-sampler-without-sampler"],
)
def test_what_cannot_be_split_is_refused_with_the_way_out(loader, fragment):
    with pytest.raises(DataLoaderSetupError, match="use_distributed_sampler=False") as caught:
        per_rank(loader)
    assert fragment in str(caught.value)


def test_resume_inside_an_epoch_of_a_split_sampler_with_its_own_generator():
    def make():
        sampler = SubsetRandomSampler(range(16), generator=torch.Generator().manual_seed(4))
        return _FabricDataLoader(with_distributed_sampler(DataLoader(DATA, batch_size=2, sampler=sampler), {"num_replicas": 2, "rank": 0}), None)

    straight = make()
    list(straight)  # epoch 0
    whole = [b.tolist() for b in straight]  # epoch 1
    interrupted = make()
    list(interrupted)
    iterator = iter(interrupted)
    next(iterator)
    state = interrupted.state_dict()
    assert any(name.endswith("sampler.sampler") for name in state["generators"])
    resumed = make()
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == whole[1:]


def test_seed_values_lightning_accepts_and_those_weft_refuses(monkeypatch):
    monkeypatch.delenv("WEFT_GLOBAL_SEED", raising=False)
    assert seed_everything("7", verbose=False) == 7 and seed_everything(8.0, verbose=False) == 8
    for bad in (7.5, True, "seven"):
        with pytest.raises(ConfigurationError, match="an int in"):
            seed_everything(bad, verbose=False)
    monkeypatch.setenv("WEFT_GLOBAL_SEED", "abc")
    with pytest.raises(ConfigurationError, match="WEFT_GLOBAL_SEED='abc'"):
        seed_everything(verbose=False)


def test_the_seed_is_reported_on_stderr_or_through_logging(monkeypatch, capsys, caplog):
    for name in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    logging.getLogger().handlers, saved = [], logging.getLogger().handlers
    try:
        seed_everything(3)
    finally:
        logging.getLogger().handlers = saved
    assert capsys.readouterr().err.strip() == "Seed set to 3"
    with caplog.at_level(logging.INFO):
        monkeypatch.setenv("RANK", "1")
        seed_everything(4)
    assert "[rank: 1] Seed set to 4" in caplog.messages
    with pytest.warns(UserWarning, match="No seed found, seed set to 0"):
        monkeypatch.delenv("WEFT_GLOBAL_SEED")
        monkeypatch.delenv("RANK")
        seed_everything()


def test_worker_seeding_follows_seed_everything_and_keeps_the_users_function():
    fabric = Fabric(accelerator="cpu")

    def own(worker_id):
        pass

    fabric.seed_everything(1)  # Fabric's method seeds workers unless told not to
    seeded = fabric.setup_dataloaders(DataLoader(DATA, num_workers=1))
    assert seeded.worker_init_fn.func is seed_worker and seeded.worker_init_fn.keywords == {"rank": 0}
    assert fabric.setup_dataloaders(DataLoader(DATA, num_workers=1, worker_init_fn=own)).worker_init_fn is own
    seed_everything(1, verbose=False)  # the function does not, as in Lightning
    assert fabric.setup_dataloaders(DataLoader(DATA, num_workers=1)).worker_init_fn is None
