"""weft-ddp: data parallel training with ``torch.nn.parallel.DistributedDataParallel``.

Installed, it adds the strategies ``ddp``, ``ddp_spawn``, ``ddp_fork`` (alias
``ddp_notebook``) and ``ddp_find_unused_parameters_true`` to ``Fabric(strategy=...)``.
For options, pass an instance: ``Fabric(strategy=DDPStrategy(static_graph=True))``.
"""

from weft_ddp.strategy import DDPStrategy, ddp_find_unused_parameters_true, ddp_fork, ddp_spawn

__all__ = ["DDPStrategy", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true"]
