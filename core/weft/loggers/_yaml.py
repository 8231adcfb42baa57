"""Write hyperparameters as YAML without a YAML library (core adds no dependency for it).

Covers what hyperparameters hold: nested mappings, lists, strings, numbers, booleans and ``None``.
Scalars are written so that YAML 1.1 readers (PyYAML) and 1.2 readers read back the same value:
strings always double-quoted with JSON escapes (valid YAML), floats always with a dot or as
``.inf``/``.nan``. Any other object is written as the string ``str(value)``.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from typing import Any

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Words YAML 1.1 would read as booleans or null if left unquoted.
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _key(key: Any) -> str:
    text = str(key)
    if _PLAIN_KEY.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)  # the exponent, when there is one, always has its sign ("1e-05", "1e+16")
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        text = f"{mantissa}.0{e}{exponent}"  # 1e-05 would be a string to YAML 1.1 readers
    return text


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):  # NumPy integers too
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _float(float(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_scalar(v)}" for k, v in value.items()) + "}"
    return json.dumps(value if isinstance(value, str) else str(value))


def dump(mapping: dict[str, Any], indent: int = 0) -> str:
    """``mapping`` as a YAML document (block style for nested mappings)."""
    if not mapping and indent == 0:
        return "{}\n"
    lines = []
    pad = "  " * indent
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{_key(key)}:\n{dump(value, indent + 1)}")
        else:
            lines.append(f"{pad}{_key(key)}: {_scalar(value)}\n")
    return "".join(lines)
