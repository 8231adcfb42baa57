"""Mixed precision: float32 parameters, forward under ``torch.autocast``, float32 outputs.

``bf16-mixed`` needs nothing but the autocast context. ``16-mixed`` adds a
gradient scaler, because fp16 gradients underflow: the loss is multiplied by a
large scale before backward, gradients are divided by it again before clipping
and stepping, and a step whose gradients overflowed is skipped while the scale is
lowered.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch

from weft.errors import MisuseError
from weft.hookspecs import hookimpl
from weft.records import PrecisionDtypes
from weft.utilities.apply import convert_floating
from weft_precision.support import DevicePrecision, check_autocast


class _MixedPrecision(DevicePrecision):
    """Autocast to ``dtype`` on the Fabric's device type; parameters and gradient reduction stay float32."""

    name = "mixed"
    dtype = torch.float32

    def check_device_type(self) -> None:
        check_autocast(self.name, self.device_type, self.dtype)

    @hookimpl
    def weft_precision_dtypes(self) -> PrecisionDtypes:
        return PrecisionDtypes(param=torch.float32, compute=self.dtype, reduce=torch.float32, autocast=True)

    @hookimpl
    def weft_precision_forward_context(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype)

    @hookimpl
    def weft_precision_convert_output(self, data: Any) -> Any:
        # The loss is computed from the outputs after the forward, outside autocast: in half
        # precision a cross-entropy loses accuracy, and under 16-mixed the scaled gradient
        # entering it (scale 2**16) overflows fp16. Float32 outputs avoid both.
        return convert_floating(data, torch.float32)

    @hookimpl
    def weft_precision_convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        # Parameters stay float32; this runs once per setup, in the process owning the device.
        self._check_hardware()
        return module



class BFloat16MixedPrecision(_MixedPrecision):
    """``bf16-mixed``: float32 parameters, bf16 autocast, no loss scaling (bf16 has float32's range)."""

    name = "bf16-mixed"
    dtype = torch.bfloat16


def _NO_STEP() -> None:
    raise RuntimeError("the gradient scaler stepped an optimizer outside weft_precision_optimizer_step")


class _ScalerView:
    """What the gradient scaler sees of one optimizer: its parameter groups, and a ``step``
    that runs the strategy's step instead of the raw ``optimizer.step``.

    It holds the optimizer weakly: views are kept per optimizer in a weak dictionary,
    which a strong reference back to its key would keep alive forever.
    """

    __slots__ = ("_optimizer", "step", "stepped_at", "__weakref__")

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self._optimizer = weakref.ref(optimizer)
        self.step: Callable[[], Any] = _NO_STEP
        self.stepped_at = 0  # the backward count at this optimizer's last step

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self._optimizer().param_groups


class Float16MixedPrecision(_MixedPrecision):
    """``16-mixed``: float32 parameters, fp16 autocast and a dynamic gradient scaler.

    The scale is updated once per training iteration, before the next backward
    (or when it is read with :attr:`loss_scale` or saved), so that every optimizer
    stepped in one iteration is unscaled with the same scale.

    :param init_scale: the first loss scale.
    :param growth_factor: factor the scale grows by after ``growth_interval`` finite steps.
    :param backoff_factor: factor the scale shrinks by after a step with non-finite gradients.
    :param growth_interval: finite steps between two growths.

    .. versionadded:: 0.1
    """

    name = "16-mixed"
    dtype = torch.float16

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        super().__init__()
        self._scaler_args = dict(
            init_scale=init_scale, growth_factor=growth_factor, backoff_factor=backoff_factor, growth_interval=growth_interval
        )
        self._sharded = False
        # Replaced in weft_validate by a scaler for the Fabric's device type.
        self.scaler: torch.amp.GradScaler | None = torch.amp.GradScaler("cpu", **self._scaler_args)
        self._views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._unscaled: set[int] = set()  # ids of the views unscaled or stepped since the last update
        self._backwards = 0
        self._update_pending = False

    @hookimpl
    def weft_validate(self, fabric: Any) -> None:
        super().weft_validate(fabric)
        # Processes holding only a shard of the gradients must agree on whether any overflowed:
        # the sharded scaler all-reduces that finding (one scalar; harmless when gradients are replicated).
        self._sharded = fabric.world_size > 1
        # A CUDA scaler asks torch whether CUDA works, which must not happen in the launching
        # process: it is built at fabric.setup(), in the process that owns the GPU.
        self.scaler = None if self.device_type == "cuda" else self._make_scaler()

    def _make_scaler(self) -> torch.amp.GradScaler:
        if self._sharded:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            scaler = ShardedGradScaler(self.device_type, **self._scaler_args)
        else:
            scaler = torch.amp.GradScaler(self.device_type, **self._scaler_args)
        if not scaler.is_enabled():
            raise _no_scaler(self.device_type)
        return scaler

    def _require_scaler(self) -> torch.amp.GradScaler:
        if self.scaler is None:
            self.scaler = self._make_scaler()
        return self.scaler

    @hookimpl
    def weft_precision_convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        self._check_hardware()
        self._require_scaler()
        return module

    # ----------------------------------------------------------------- per step

    @hookimpl
    def weft_precision_pre_backward(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._update_pending:
            self._update()
        self._backwards += 1
        return self.scaler.scale(tensor)

    @hookimpl
    def weft_precision_unscale_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        view = self._view(optimizer)
        if id(view) in self._unscaled:
            return  # already unscaled this iteration: unscaling twice would shrink the gradients again
        self._require_backward(view, "clip_gradients()")
        self.scaler.unscale_(view)
        self._unscaled.add(id(view))

    @hookimpl
    def weft_precision_optimizer_step(self, optimizer: torch.optim.Optimizer, step: Callable[[], Any]) -> Any:
        view = self._view(optimizer)
        self._require_backward(view, "optimizer.step()")
        view.step = step
        try:
            # Unscales (unless clip_gradients did), then runs `step` only when every gradient is finite.
            result = self.scaler.step(view)
        finally:
            view.step = _NO_STEP  # `step` holds the optimizer: keep no reference past this call
        view.stepped_at = self._backwards
        self._unscaled.add(id(view))
        self._update_pending = True
        return result

    # ----------------------------------------------------------------- state

    @property
    def loss_scale(self) -> float:
        """The current loss scale (applying a pending update first)."""
        if self._update_pending:
            self._update()
        return float(self._require_scaler().get_scale())

    @hookimpl
    def weft_precision_state_dict(self) -> dict[str, Any]:
        if self._update_pending:
            self._update()
        return self._require_scaler().state_dict()

    @hookimpl
    def weft_precision_load_state_dict(self, state: dict[str, Any]) -> None:
        if self._update_pending:
            self._update()
        self._require_scaler().load_state_dict(state)

    # ----------------------------------------------------------------- helpers

    def _view(self, optimizer: torch.optim.Optimizer) -> _ScalerView:
        view = self._views.get(optimizer)
        if view is None:
            view = self._views[optimizer] = _ScalerView(optimizer)
        return view

    def _require_backward(self, view: _ScalerView, what: str) -> None:
        if view.stepped_at == self._backwards:
            raise MisuseError(
                f"{what} under precision='16-mixed' without fabric.backward(loss) since this optimizer's last step. "
                "Call fabric.backward(loss) instead of loss.backward(): it scales the loss, and the step unscales "
                "the gradients; stepping gradients that were never scaled would shrink them silently."
            )

    def _update(self) -> None:
        self.scaler.update()
        self._unscaled.clear()
        self._update_pending = False

    def __getstate__(self) -> dict[str, Any]:
        # Weak references do not pickle; views are rebuilt on first use in the new process.
        state = dict(self.__dict__)
        state["_views"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._views = weakref.WeakKeyDictionary()


def _no_scaler(device_type: str) -> Exception:
    from weft.errors import ConfigurationError

    return ConfigurationError(
        f"precision='16-mixed' needs a gradient scaler on {device_type!r}, which torch {torch.__version__} "
        "does not provide there. Use precision='bf16-mixed' (no scaler needed) or '32-true'."
    )
