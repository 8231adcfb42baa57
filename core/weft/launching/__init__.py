"""The pieces behind :mod:`weft.launch`, one job each.

:mod:`weft.launch` is the public face (it re-exports the public names); the code lives here:

``elastic``
    torch elastic's launcher (torchrun's machinery): rendezvous, ``LaunchConfig``, running the
    workers and turning their failures into one weft error; ``launch_processes``.
``failures``
    ``describe_failures``: a readable account of how a job's workers ended, root cause first.
``spawn``
    ``spawn_processes``: ``torch.multiprocessing`` workers running a function.
``worker``
    What runs inside each worker: the script (or function) with its exit recorded.
``run_command``
    The ``weft run`` command: its flags, their checks, and the start of the workers.
"""
