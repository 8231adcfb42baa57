"""``local_sgd``: Local SGD, written only against weft's documented plugin API.

Each process trains its own replica on its own share of the data, with no gradient
communication in backward; every ``sync_every`` optimizer steps the replicas'
parameters are averaged, so they agree again. The strategy says so through
``weft_strategy_capabilities`` (``gradient_sync="periodic"``), and the conformance kit
checks that instead of per-step gradient averaging:
``pytest --weft-strategy=local_sgd --weft-strategy-option sync_every=2``.
"""

from __future__ import annotations

import contextlib
import torch
from torch import nn

from weft import checkpoint, distributed, launch
from weft.clipping import WholeGradientClipping
from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl
from weft.records import StrategyCapabilities


class LocalSGDStrategy(distributed.CollectiveHooks, WholeGradientClipping):
    """Data parallel training that averages parameters every ``sync_every`` optimizer steps.

    Between syncs each process's gradients are its own, so clipping them locally
    (:class:`weft.clipping.WholeGradientClipping`) is right. Checkpoints hold rank 0's
    replica: save at a sync point, where every replica is the same.

    :param sync_every: optimizer steps between two parameter averages (>= 1).
    """

    name = "local_sgd"

    def __init__(self, sync_every: int = 4) -> None:
        if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
            raise ConfigurationError(f"local_sgd: sync_every={sync_every!r} must be an integer >= 1 (optimizer steps between averages)")
        self.sync_every = sync_every
        self.steps = 0
        self._modules: list[nn.Module] = []

    @hookimpl
    def weft_strategy_capabilities(self):
        return StrategyCapabilities(gradient_sync="periodic", sync_every=self.sync_every, no_backward_sync=False)

    # ------------------------------------------------------------------ processes

    @hookimpl
    def weft_strategy_launch(self, fabric, function):
        return launch.launch_processes(fabric, function)

    @hookimpl
    def weft_strategy_setup_environment(self, fabric):
        distributed.init_process_group(fabric)

    @hookimpl
    def weft_strategy_teardown(self, fabric):
        distributed.destroy_process_group()

    # ------------------------------------------------------------------ model, data, steps

    @hookimpl
    def weft_strategy_module_init_context(self, fabric, empty_init):
        # The meta device allocates nothing; setup_module allocates and takes rank 0's values.
        return torch.device("meta") if empty_init else fabric.device

    @hookimpl
    def weft_strategy_setup_module(self, fabric, module):
        if any(t.is_meta for t in module.parameters()):
            module = module.to_empty(device=fabric.device)
        module = module.to(fabric.device)
        # Every replica starts from rank 0's values.
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                distributed.broadcast_tensor(tensor, src=0)
        self._modules.append(module)
        return module

    @hookimpl
    def weft_strategy_setup_optimizer(self, fabric, optimizer):
        return optimizer

    @hookimpl
    def weft_strategy_distributed_sampler_kwargs(self, fabric):
        return {"num_replicas": fabric.world_size, "rank": fabric.global_rank}

    @hookimpl
    def weft_strategy_no_backward_sync(self, fabric, module, enabled):
        return contextlib.nullcontext()  # backward never synchronises: nothing to skip

    @hookimpl
    def weft_strategy_optimizer_step(self, fabric, optimizer):
        out = optimizer.step()
        self.steps += 1
        if self.steps % self.sync_every == 0:
            self.average_parameters()
        return out

    def average_parameters(self) -> None:
        """Replace every replica's parameters by their mean over all processes."""
        for module in self._modules:
            distributed.average_parameters(module)

    # ------------------------------------------------------------------ checkpoints

    @hookimpl
    def weft_strategy_save_checkpoint(self, fabric, path, state, filter):
        if fabric.global_rank == 0:
            checkpoint.atomic_torch_save(checkpoint.to_state_dicts(state, filter), path)
        return True

    @hookimpl
    def weft_strategy_load_checkpoint(self, fabric, path, state, strict, weights_only):
        return checkpoint.restore(checkpoint.load_file(path, weights_only=weights_only), state, strict)
