"""What runs inside each worker the elastic launcher starts: the script or function, its end recorded.

``python -m weft.launch SCRIPT ARGS`` (the command each worker runs) calls :func:`_run_script`
and, after success, :func:`_finish`; ``launch_processes(fabric, function)`` runs
:func:`_call_recorded` in each worker.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable


def _call_recorded(function: Callable[[], Any]) -> Any:
    from torch.distributed.elastic.multiprocessing.errors import record

    from weft import lifecycle

    lifecycle.watch_launcher()
    with _exit_recorded():
        return record(function)()


def _run_script(argv: list[str]) -> dict:
    """Run a script (or ``--module NAME``) as ``__main__``, recording how it ends for the launcher.

    An uncaught error goes to the elastic error file; how the worker ended (exit code, error,
    signal) and when goes to weft's exit record (:mod:`weft.lifecycle`). The worker also stops
    by itself if its launcher dies.

    :returns: the script's global namespace.
    """
    import runpy

    from torch.distributed.elastic.multiprocessing.errors import record

    from weft import lifecycle

    lifecycle.watch_launcher()
    namespace: dict = {}

    def run() -> None:  # `record` does not pass a return value through
        if argv and argv[0] == "--module":
            sys.argv = [argv[1], *argv[2:]]
            namespace.update(runpy.run_module(argv[1], run_name="__main__", alter_sys=True))
            return
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))  # as `python script.py` would
        namespace.update(runpy.run_path(argv[0], run_name="__main__"))

    with _exit_recorded():
        record(run)()
    return namespace


class _exit_recorded:
    """Note how the code inside ends (exit code, uncaught error, Ctrl-C) and write the exit record.

    Ctrl-C ends the worker quietly with status 130: its launcher reports the interruption.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        from weft import lifecycle

        if exc is None:
            lifecycle.note_exit(0)
        elif isinstance(exc, SystemExit):
            lifecycle.note_exit(lifecycle.exit_code_of(exc))
        elif isinstance(exc, KeyboardInterrupt):
            lifecycle.note_signal(signal.SIGINT)
            lifecycle.write_exit_record()
            raise SystemExit(128 + signal.SIGINT) from None
        else:
            lifecycle.note_exception(exc)
        lifecycle.write_exit_record()
        return False


def _finish(namespace: dict) -> None:
    """End a worker whose script succeeded, without the interpreter's final teardown.

    The process group is destroyed, the script's objects are released and the exit
    handlers run while the interpreter is whole; then the process exits directly, as
    multiprocessing's workers do. Letting the interpreter finalise instead races with
    gloo's worker threads, which can release Python-owned state after the interpreter
    has stopped accepting threads and abort the process ("terminate called without
    an active exception").
    """
    import atexit
    import gc

    from weft.distributed import destroy_process_group

    try:
        destroy_process_group()
    except Exception:  # noqa: BLE001 - exiting anyway; the script's own status decides
        pass
    namespace.clear()  # closes files and frees models the script left in its globals
    gc.collect()
    atexit._run_exitfuncs()  # noqa: SLF001 - the exit handlers os._exit would otherwise skip
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(0)
