"""``torch.multiprocessing`` workers running a function (``ddp_spawn``, notebooks): :func:`spawn_processes`."""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import TYPE_CHECKING, Any, Callable

from weft.errors import ConfigurationError, LaunchError, MisuseTypeError

if TYPE_CHECKING:
    from weft.fabric import Fabric
    from weft.records import Launched


def spawn_processes(fabric: Fabric, function: Callable[[], Any] | None, start_method: str = "spawn") -> Launched:
    """Run ``function`` in ``fabric.num_devices`` new processes on this node (``torch.multiprocessing``).

    :param fabric: the Fabric that called ``launch(fn)``.
    :param function: a no-argument callable (picklable for ``"spawn"``/``"forkserver"``).
    :param start_method: ``"spawn"``, ``"fork"`` (notebooks) or ``"forkserver"``.
    :returns: a :class:`weft.records.Launched` with rank 0's result.
    :raises LaunchError: when a process failed, naming its rank and error.
    """
    import torch.multiprocessing as mp

    from weft.builtins.environments import find_free_port
    from weft.records import Launched

    if function is None:
        # A TypeError, as Lightning raises for launch() without a function on a spawning strategy.
        raise MisuseTypeError(
            f"strategy {fabric.strategy_name!r} starts processes for a function: call fabric.launch(train_fn). "
            "To run the whole script in every process use strategy='ddp' (or `weft run`)."
        )
    if fabric.num_nodes > 1:
        raise ConfigurationError(f"{fabric.strategy_name!r} starts processes on one machine; use `weft run` for num_nodes > 1")
    nprocs = fabric.num_devices
    port = find_free_port()
    with tempfile.TemporaryDirectory(prefix="weft-spawn-") as folder:
        result_path = os.path.join(folder, "rank0.pkl")
        context = mp.start_processes(
            _spawned, args=(function, nprocs, port, result_path), nprocs=nprocs, join=False, start_method=start_method
        )
        try:
            while not context.join():
                pass
        except mp.ProcessRaisedException as exc:
            raise LaunchError(f"rank {exc.error_index} (pid {exc.pid}) failed; the other processes were stopped.\n{exc}") from None
        except mp.ProcessExitedException as exc:
            how = f"was killed by signal {exc.signal_name}" if exc.signal_name else f"exited with code {exc.exit_code}"
            raise LaunchError(f"rank {exc.error_index} (pid {exc.pid}) {how}; the other processes were stopped.") from None
        if not os.path.exists(result_path):
            return Launched(None)
        with open(result_path, "rb") as f:
            return Launched(pickle.load(f))


def _spawned(local_rank: int, function: Callable[[], Any], nprocs: int, port: int, result_path: str) -> None:
    from weft import lifecycle

    lifecycle.watch_launcher(rank=local_rank)
    os.environ.update(
        RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs), LOCAL_WORLD_SIZE=str(nprocs),
        GROUP_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    result = function()
    if local_rank == 0:
        tmp = result_path + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(result, f)
        os.replace(tmp, result_path)
