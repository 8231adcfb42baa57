"""Give each rank its share of a DataLoader's data, keeping everything else the user chose.

As Lightning Fabric does:

* a plain ``RandomSampler``/``SequentialSampler`` over the whole dataset becomes a
  ``DistributedSampler`` (shuffling when it was random, seeded with the global seed so every
  rank draws the same permutation);
* any other sampler (a subset, weights, the user's own class) is kept, and each rank takes
  every ``world_size``-th index of what it yields (:class:`ShardedSampler`);
* a batch sampler the user passed is rebuilt around the sharded sampler;
* the loader is rebuilt through its own class's constructor, so a DataLoader subclass keeps
  its class and its attributes.

Rebuilding reads each constructor argument back from the attribute of the same name. When
that cannot reproduce the object (a required argument without such an attribute, or a
rebuilt object that disagrees with the original on some attribute), weft raises instead of
training on a loader that is not the user's.
"""

from __future__ import annotations

import datetime
import inspect
import io
import os
from functools import partial
from typing import Any, Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler

from weft.errors import CheckpointError, DataLoaderSetupError
from weft.utilities.seed import global_seed, seed_worker, seed_workers_requested

_OPT_OUT = "or pass use_distributed_sampler=False to setup_dataloaders() and give each rank its share yourself"

# DataLoader bookkeeping that a fresh loader legitimately has different values for.
_BOOKKEEPING = frozenset({"_DataLoader__initialized", "_iterator", "_IterableDataset_len_called"})

_MISSING = object()


class ShardedSampler(DistributedSampler):
    """Each rank's share of the indices another sampler yields.

    Rank ``r`` takes positions ``r, r + num_replicas, ...`` of the wrapped sampler's order,
    padded by wrapping around so every rank gets as many (``drop_last=True`` trims instead),
    exactly as a non-shuffling ``DistributedSampler`` splits a dataset.

    The wrapped sampler is iterated afresh every epoch, so a random one reshuffles. It must
    yield the same order on every rank, as it does when its generator is seeded alike on all
    of them (``seed_everything``). ``set_epoch`` is passed on to it when it has one.
    """

    def __init__(
        self, sampler: Any, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = False,
        seed: int = 0, drop_last: bool = False,
    ) -> None:
        super().__init__(
            _Sized(_length(sampler)), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.sampler = sampler

    def __iter__(self) -> Iterator[Any]:
        # A plain function, not a generator: the wrapped sampler draws its order as soon as the
        # epoch's iterator is made, at the same point in the run as under Lightning.
        order = list(self.sampler)
        if len(order) != len(self.dataset):
            raise DataLoaderSetupError(
                f"The sampler {type(self.sampler).__name__} yielded {len(order)} indices but its len() is "
                f"{len(self.dataset)}; weft splits its indices between ranks by that length. Make __len__ agree "
                f"with __iter__, {_OPT_OUT}"
            )
        return iter([order[position] for position in super().__iter__()])

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        inner = getattr(self.sampler, "set_epoch", None)
        if callable(inner):
            inner(epoch)


class _Sized:
    """Stands in for a dataset of ``length`` items: all ``DistributedSampler`` needs of one."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


def with_distributed_sampler(loader: DataLoader, sampler_kwargs: dict[str, Any]) -> DataLoader:
    """A copy of ``loader`` that hands this rank its share of the data (``loader`` itself when
    it needs none: an iterable dataset, or a ``DistributedSampler`` already in place).

    :param sampler_kwargs: the strategy's ``DistributedSampler`` arguments (``num_replicas``, ``rank``).
    :raises DataLoaderSetupError: when the loader or its batch sampler cannot be rebuilt faithfully.
    """
    if isinstance(loader.dataset, IterableDataset):
        return loader  # an iterable dataset splits itself between ranks
    batch_sampler = loader.batch_sampler
    # A loader made with batch_size= builds its own BatchSampler around loader.sampler; any
    # other batch sampler was passed by the user and decides the order through its own sampler.
    user_batch_sampler = batch_sampler is not None and getattr(batch_sampler, "sampler", None) is not loader.sampler
    if not user_batch_sampler:
        if isinstance(loader.sampler, DistributedSampler):
            return loader
        sharded = _shard(loader.sampler, loader.dataset, sampler_kwargs)
        return _rebuild(loader, {"sampler": sharded, "shuffle": False, "batch_sampler": None}, DataLoader, "sampler")
    inner = getattr(batch_sampler, "sampler", None)
    if inner is None:
        raise DataLoaderSetupError(
            f"The batch sampler {type(batch_sampler).__name__} has no `sampler` attribute, so weft cannot tell "
            "which indices it batches to split them between ranks. Take the sampler it draws from as a "
            f"`sampler` argument stored as `self.sampler`, {_OPT_OUT}"
        )
    if isinstance(inner, DistributedSampler):
        return loader
    sharded_batches = _rebuild(batch_sampler, {"sampler": _shard(inner, loader.dataset, sampler_kwargs)}, BatchSampler, "sampler")
    # The values DataLoader requires beside a batch_sampler.
    changes = {"batch_sampler": sharded_batches, "sampler": None, "shuffle": False, "batch_size": 1, "drop_last": False}
    return _rebuild(loader, changes, DataLoader, "batch_sampler")


def add_worker_seeding(loader: Any, rank: int) -> None:
    """After ``seed_everything(workers=True)``, give ``loader`` a ``worker_init_fn`` that seeds
    each worker from (seed, ``rank``, worker id). A loader's own ``worker_init_fn`` is kept."""
    if seed_workers_requested() and hasattr(loader, "worker_init_fn") and loader.worker_init_fn is None:
        loader.worker_init_fn = partial(seed_worker, rank=rank)


def _shard(sampler: Any, dataset: Any, sampler_kwargs: dict[str, Any]) -> DistributedSampler:
    """This rank's share of ``sampler``'s indices."""
    kwargs = dict(sampler_kwargs)
    order = _whole_dataset_order(sampler, dataset)
    kwargs.setdefault("shuffle", order == "random")
    kwargs.setdefault("seed", global_seed())
    if order is not None:
        return DistributedSampler(dataset, **kwargs)
    return ShardedSampler(sampler, **kwargs)


def _whole_dataset_order(sampler: Any, dataset: Any) -> str | None:
    """``"random"`` or ``"sequential"`` when ``sampler`` walks all of ``dataset`` the way a
    ``RandomSampler``/``SequentialSampler`` does (a ``DistributedSampler`` can take its place);
    ``None`` for anything else, whose own indices must then be split."""
    try:
        size = len(dataset)
    except TypeError:
        return None
    if (
        isinstance(sampler, RandomSampler) and type(sampler).__iter__ is RandomSampler.__iter__
        and not sampler.replacement and sampler.num_samples == size
    ):
        return "random"
    if isinstance(sampler, SequentialSampler) and type(sampler).__iter__ is SequentialSampler.__iter__ and len(sampler) == size:
        return "sequential"
    return None


def _length(sampler: Any) -> int:
    try:
        return len(sampler)
    except TypeError:
        raise DataLoaderSetupError(
            f"The sampler {type(sampler).__name__} has no len(), so weft cannot split its indices evenly between "
            f"ranks. Give it a __len__, {_OPT_OUT}"
        ) from None


def _rebuild(obj: Any, changes: dict[str, Any], base: type, needed: str) -> Any:
    """A new ``type(obj)`` made through its constructor, with ``changes`` and otherwise the
    arguments read back from ``obj``'s attributes of the same names.

    :param base: the torch class whose arguments a ``**kwargs`` in the constructor passes on.
    :param needed: the argument of ``changes`` the rebuilt object must end up holding.
    """
    cls = type(obj)
    name = cls.__name__
    try:
        params = list(inspect.signature(obj.__init__).parameters.values())
    except (TypeError, ValueError):
        raise DataLoaderSetupError(f"weft cannot read the constructor signature of {name} to rebuild it, {_OPT_OUT}") from None
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    passes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    if needed not in {p.name for p in named} and not passes_kwargs:
        raise DataLoaderSetupError(
            f"weft gives each rank its share of the data by rebuilding your {name} with a new `{needed}`, but "
            f"{name}.__init__ takes no `{needed}` argument. Add one (or **kwargs passed on to {base.__name__}), "
            f"{_OPT_OUT}"
        )
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    missing = []
    for p in named:
        value = changes.get(p.name, _MISSING)
        if value is _MISSING:
            value = _attribute(obj, p.name)
            if value is _MISSING and p.default is p.empty:
                missing.append(p.name)
                continue
            if value is _MISSING or value is p.default:
                if p.kind is p.POSITIONAL_ONLY:
                    args.append(p.default)  # keep later positional arguments in their places
                continue
        if p.kind is p.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[p.name] = value
    if missing:
        raise DataLoaderSetupError(
            f"weft gives each rank its share of the data by rebuilding your {name} through its constructor, "
            f"reading each argument back from the attribute of the same name, but {name} has no attribute for "
            f"{', '.join(missing)}. Store them in __init__ (e.g. `self.{missing[0]} = {missing[0]}`), {_OPT_OUT}"
        )
    if passes_kwargs:
        own = {p.name for p in named}
        for p in list(inspect.signature(base.__init__).parameters.values())[1:]:
            if p.name in own or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = changes[p.name] if p.name in changes else _attribute(obj, p.name)
            if value is not _MISSING and (p.name in changes or value is not p.default):
                kwargs[p.name] = value
    try:
        rebuilt = cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        call = ", ".join([*(f"{v!r:.40}" for v in args), *(f"{k}={v!r:.40}" for k, v in kwargs.items())])
        raise DataLoaderSetupError(
            f"weft gives each rank its share of the data by rebuilding your {name} through its constructor, "
            f"with the values of its attributes, but {name}({call}) failed: {exc}. Make each constructor "
            f"argument an attribute of the same name, {_OPT_OUT}"
        ) from exc
    if getattr(rebuilt, needed, None) is not changes[needed]:
        raise DataLoaderSetupError(
            f"weft rebuilt your {name} with each rank's `{needed}`, but the rebuilt one does not use it (its "
            f"constructor does not pass `{needed}` on to {base.__name__}). Pass it on, {_OPT_OUT}"
        )
    _carry_attributes(obj, rebuilt, skip=set(changes) | {"sampler", "batch_sampler"} | _BOOKKEEPING)
    return rebuilt


def _attribute(obj: Any, name: str) -> Any:
    """The public attribute or property ``name`` of ``obj``, or ``_MISSING``."""
    if name.startswith("_"):
        return _MISSING
    if name in vars(obj):
        return vars(obj)[name]
    if isinstance(inspect.getattr_static(type(obj), name, None), property):
        try:
            return getattr(obj, name)
        except Exception:  # noqa: BLE001 - a property that cannot be read gives no value to pass
            return _MISSING
    return _MISSING


def _carry_attributes(original: Any, rebuilt: Any, skip: set[str]) -> None:
    """Check the rebuilt object agrees with the original; copy attributes set after construction.

    Attributes the constructor set must agree: one that does not means the constructor did
    not get back the value the user gave it (an argument stored under another name, or
    transformed), and the rebuilt loader would silently differ.
    """
    after = vars(rebuilt)
    for key, value in vars(original).items():
        if key in skip:
            continue
        if key not in after:
            setattr(rebuilt, key, value)  # set by the user after construction
        elif _differ(value, after[key]):
            raise DataLoaderSetupError(
                f"weft gives each rank its share of the data by rebuilding your {type(original).__name__} through "
                f"its constructor, but the rebuilt one has {key}={after[key]!r:.80} where yours has {value!r:.80}: "
                "the constructor does not get back the value it was given. Store each constructor argument "
                f"unchanged as an attribute of the same name, {_OPT_OUT}"
            )


_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)


def _differ(a: Any, b: Any) -> bool:
    """Whether two attribute values certainly differ.

    Plain values, containers and tensors are compared; other objects (datasets, functions,
    generators a constructor makes afresh) cannot be, and count as agreeing.
    """
    if a is b:
        return False
    if isinstance(a, _PLAIN) or isinstance(b, _PLAIN):
        return type(a) is not type(b) or (a != b and not (a != a and b != b))  # NaN agrees with NaN
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) != len(b) or any(_differ(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() != b.keys() or any(_differ(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        return a != b
    if isinstance(a, torch.Tensor):
        return a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a.detach().cpu(), b.detach().cpu())
    return False


class EpochStartExchange:
    """Lets the rank that writes a checkpoint read every rank's epoch-start generator states.

    Each rank's loader draws its epoch's order and worker seeds from its own generators, so an
    exact resume needs every rank's states, while DDP writes the checkpoint from rank 0 alone.
    Rather than a collective in ``fabric.save`` (which would hang ``if fabric.is_global_zero:
    fabric.save(...)``), each rank leaves its states in the process group's key-value store
    when it starts an epoch (one small write per epoch, nothing per step), and whoever saves
    reads them from there: saving works whether one rank or every rank calls it.

    Keys name the loader by the order ``setup_dataloaders`` made it in, so every rank must set
    up the same loaders in the same order (each entry records the loader's length as a check).
    Only the two latest epochs are kept per rank.
    """

    def __init__(self, store: Any, index: int, rank: int, world_size: int, timeout: datetime.timedelta) -> None:
        self.store, self.index, self.rank, self.world_size, self.timeout = store, index, rank, world_size, timeout

    def _key(self, rank: int, epoch: int) -> str:
        return f"{self.index}/{rank}/{epoch}"

    def publish(self, epoch: int, generators: dict[str, torch.Tensor] | None, length: int | None) -> None:
        """Leave this rank's generator states at the start of ``epoch`` for the writer to read."""
        buffer = io.BytesIO()
        torch.save({"epoch": epoch, "length": length, "generators": generators}, buffer)
        self.store.set(self._key(self.rank, epoch), buffer.getvalue())
        if epoch >= 2:
            self.store.delete_key(self._key(self.rank, epoch - 2))

    def collect(self, epoch: int, own: dict[str, torch.Tensor] | None, length: int | None) -> list[Any]:
        """Every rank's generator states at the start of ``epoch`` (this rank's from ``own``).

        :raises CheckpointError: when a rank has not started that epoch of this loader within
            the collective timeout, or its entry is for a loader of another length.
        """
        ranks: list[Any] = []
        for rank in range(self.world_size):
            if rank == self.rank:
                ranks.append(own)
                continue
            key = self._key(rank, epoch)
            try:
                self.store.wait([key], self.timeout)
            except (RuntimeError, torch.distributed.DistError) as exc:
                raise CheckpointError(
                    f"Saving data loader #{self.index}'s position needs rank {rank}'s generator states at the start "
                    f"of epoch {epoch}, and rank {rank} did not start that epoch within "
                    f"{self.timeout.total_seconds():.0f}s. Every rank must iterate a loader whose position is saved "
                    "(leave a loader that only some ranks use out of the saved state)."
                ) from exc
            entry = torch.load(io.BytesIO(self.store.get(key)), weights_only=True)
            if entry["length"] != length:
                raise CheckpointError(
                    f"Data loader #{self.index} has {length} batches on rank {self.rank} but {entry['length']} on rank "
                    f"{rank}: the ranks set up different loaders in that place. Call setup_dataloaders with the same "
                    "loaders in the same order on every rank."
                )
            ranks.append(entry["generators"])
        return ranks


def epoch_start_exchange(index: int, rank: int, world_size: int) -> EpochStartExchange | None:
    """The :class:`EpochStartExchange` of set-up loader number ``index``, through the default
    process group's store; ``None`` when there is no torch.distributed process group to use."""
    import torch.distributed as dist

    if world_size < 2 or not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        store = dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):  # a group without a store: no exchange
        return None
    from weft.distributed import collective_timeout

    timeout = collective_timeout()
    # A restarted elastic job shares the agent's store: its keys must not meet the last attempt's.
    prefix = f"weft-loader-positions/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
    return EpochStartExchange(dist.PrefixStore(prefix, store), index, rank, world_size, timeout)
