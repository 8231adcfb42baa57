"""What Fabric's collectives accept: reduce ops spelled as Lightning accepts them, and Python numbers.

``_reduce_op_name`` turns ``"avg"``, ``"SUM"`` or ``torch.distributed.ReduceOp.SUM`` into weft's
name; ``_numbers_to_tensors`` turns numbers (and NumPy arrays) into tensors, as Lightning does.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from weft.errors import ReduceOpError


_REDUCE_OPS = ("sum", "mean", "max", "min")

# Other spellings Lightning accepts for the same reductions.
_REDUCE_OP_ALIASES = {"avg": "mean"}


def _reduce_op_name(reduce_op: Any) -> str:
    """weft's name for a reduction given as Lightning accepts it: a string (any case) or a ReduceOp."""
    name = reduce_op
    if not isinstance(reduce_op, str):
        # torch.distributed.ReduceOp.SUM has a name; a ReduceOp(...) object holds one in .op
        name = getattr(reduce_op, "name", None) or getattr(getattr(reduce_op, "op", None), "name", None)
    key = str(name).lower() if isinstance(name, str) else None
    key = _REDUCE_OP_ALIASES.get(key, key)
    if key not in _REDUCE_OPS:
        raise ReduceOpError(
            f"reduce_op={reduce_op!r} is not a reduction weft performs: use one of {', '.join(_REDUCE_OPS)} "
            "('avg' is 'mean'), or torch.distributed.ReduceOp.SUM/AVG/MAX/MIN"
        )
    return key


# As Lightning converts numbers before a collective (bool as uint8: NCCL refuses torch.bool).
_NUMBER_DTYPES = ((bool, torch.uint8), (int, torch.int32), (float, torch.float32))


def _numbers_to_tensors(data: Any) -> Any:
    """``data`` with every Python number (and NumPy array) inside it turned into a tensor."""
    for kind, dtype in _NUMBER_DTYPES:
        if isinstance(data, kind):
            return torch.tensor(data, dtype=dtype)
    numpy = sys.modules.get("numpy")  # an array can only exist if NumPy is imported already
    if numpy is not None and isinstance(data, numpy.ndarray):
        return torch.from_numpy(data)
    if isinstance(data, dict):
        converted = {k: _numbers_to_tensors(v) for k, v in data.items()}
        return converted if type(data) is dict else type(data)(converted)
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(_numbers_to_tensors(v) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(_numbers_to_tensors(v) for v in data)
    return data
