"""``SpikeDetection``: a callback that stops training when the loss spikes.

Arguments, behaviour and the file of batches to skip follow Lightning's ``SpikeDetection``.
Lightning keeps its running mean in a ``torchmetrics`` metric; here it is a plain window of
the last ``window`` losses, so weft needs no torchmetrics.

Use it as a Fabric callback: ``Fabric(callbacks=[SpikeDetection()])``, then every step
``fabric.call("on_train_batch_end", fabric=fabric, loss=loss, batch=batch, batch_idx=i)``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import torch

if TYPE_CHECKING:
    from weft.fabric import Fabric


class TrainingSpikeException(RuntimeError):
    """Raised on every rank when a loss spike was detected on any of them."""

    def __init__(self, batch_idx: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(f"Training spike detected in batch {batch_idx}", *args, **kwargs)


class SpikeDetection:
    """Stop training with :class:`TrainingSpikeException` when the loss spikes, after writing the
    batches to skip on resuming (the spiking one and the one before, which may have moved the
    weights to where this batch spikes) to a JSON file.

    A loss is a spike when it is no improvement on the previous loss and differs from the mean
    of the last ``window`` losses by at least ``atol`` and by at least ``rtol`` times that mean
    (a tolerance of ``None`` is always met); with ``finite_only`` a NaN or infinite loss is one.

    :param mode: ``"min"`` when a lower loss is better, ``"max"`` when higher is.
    :param window: losses in the running mean.
    :param warmup: batches (by ``batch_idx``) before detection starts.
    :param atol: absolute tolerance, or ``None``.
    :param rtol: tolerance relative to the running mean, or ``None``.
    :param exclude_batches_path: the JSON file (or a folder for ``skip_batches.json``) the
        batches to skip go to; default: the working directory.
    :param finite_only: ``True``: a non-finite loss is a spike. ``False``: it is not, and is
        left out of the running mean unless every rank's loss is finite.
    """

    def __init__(
        self,
        mode: Literal["min", "max"] = "min",
        window: int = 10,
        warmup: int = 1,
        atol: Optional[float] = None,
        rtol: Optional[float] = 2.0,
        exclude_batches_path: Optional[Union[str, os.PathLike]] = None,
        finite_only: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"SpikeDetection(mode={mode!r}): pass 'min' (lower loss is better) or 'max'")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"SpikeDetection(window={window!r}): pass the number of losses to average, an int >= 1")
        self.mode = mode
        self.window = window
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.exclude_batches_path = exclude_batches_path
        self.finite_only = finite_only
        self.last_val: Union[torch.Tensor, float] = 0.0
        self.bad_batches: list[int] = []
        # (sum, element count) of each recent loss: the mean weighs every element alike, as torchmetrics' MeanMetric does.
        self._recent: deque[tuple[torch.Tensor, int]] = deque(maxlen=window)

    @torch.no_grad()
    def on_train_batch_end(self, fabric: Fabric, loss: torch.Tensor, batch: Any, batch_idx: int) -> None:
        """Check ``loss``; on a spike on any rank, write the skip file (rank 0) and raise on every rank."""
        if self.exclude_batches_path is None:
            self.exclude_batches_path = os.getcwd()
        if not str(self.exclude_batches_path).endswith(".json"):
            self.exclude_batches_path = os.path.join(self.exclude_batches_path, "skip_batches.json")
        loss = loss.detach()
        is_spike = batch_idx >= self.warmup and self._is_spike(loss)
        # Each rank judges its own loss; all stop together when any of them spiked.
        if _any_rank(fabric, is_spike):
            self._handle_spike(fabric, batch_idx)
        elif self.finite_only or _all_ranks(fabric, bool(torch.isfinite(loss).all())):
            self._update_stats(loss)

    def running_mean(self) -> float:
        """The mean of the recent losses (NaN before the first)."""
        total = sum(float(s) for s, _ in self._recent)
        count = sum(n for _, n in self._recent)
        return total / count if count else float("nan")

    def _is_spike(self, loss: torch.Tensor) -> bool:
        if self.finite_only and not bool(torch.isfinite(loss).all()):
            return True
        diff = loss - self.last_val
        better = (diff <= 0) if self.mode == "min" else (diff >= 0)
        if bool(better.all()):
            return False
        mean = self.running_mean()
        # A NaN mean (no loss yet) fails the comparisons, so it never makes a spike, as in Lightning.
        # A loss with several elements spikes when one of them is far enough off on both counts.
        distance = (loss - mean).abs()
        far = torch.ones_like(distance, dtype=torch.bool)
        if self.atol is not None:
            far &= distance >= abs(self.atol)
        if self.rtol is not None:
            far &= distance >= abs(self.rtol * mean)
        return bool(far.any())

    def _handle_spike(self, fabric: Fabric, batch_idx: int) -> None:
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        if fabric.global_rank == 0:
            path = str(self.exclude_batches_path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                json.dump(self.bad_batches, f, indent=4)
        raise TrainingSpikeException(batch_idx=batch_idx)

    def _update_stats(self, loss: torch.Tensor) -> None:
        self._recent.append((loss.float().sum(), loss.numel()))
        self.last_val = loss

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_val": self.last_val.item() if isinstance(self.last_val, torch.Tensor) and self.last_val.numel() == 1 else self.last_val,
            "mode": self.mode,
            "warmup": self.warmup,
            "atol": self.atol,
            "rtol": self.rtol,
            "bad_batches": list(self.bad_batches),
            "bad_batches_path": None if self.exclude_batches_path is None else str(self.exclude_batches_path),
            "running": [(float(s), n) for s, n in self._recent],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.last_val = state.pop("last_val")
        self.mode = state.pop("mode")
        self.warmup = state.pop("warmup")
        self.atol = state.pop("atol")
        self.rtol = state.pop("rtol")
        self.bad_batches = list(state.pop("bad_batches"))
        self.exclude_batches_path = state.pop("bad_batches_path")
        running = state.pop("running", [])
        if not isinstance(running, list):
            warnings.warn("SpikeDetection.load_state_dict: the running mean was saved by another library; starting it afresh", stacklevel=2)
            running = []
        self._recent = deque(((torch.tensor(s), int(n)) for s, n in running), maxlen=self.window)


def _any_rank(fabric: Any, decision: bool) -> bool:
    if fabric.world_size == 1:
        return decision
    flag = torch.tensor(int(decision), device=fabric.device)
    return bool(fabric.all_reduce(flag, reduce_op="sum").item() > 0)


def _all_ranks(fabric: Any, decision: bool) -> bool:
    if fabric.world_size == 1:
        return decision
    flag = torch.tensor(int(decision), device=fabric.device)
    return bool(fabric.all_reduce(flag, reduce_op="sum").item() == fabric.world_size)
