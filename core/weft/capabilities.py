"""Read a strategy's :class:`~weft.records.StrategyCapabilities`, with the documented fallback."""

from __future__ import annotations

from typing import Any

from weft.records import StrategyCapabilities

#: What a strategy that does not implement ``weft_strategy_capabilities`` is taken to guarantee.
FALLBACK = StrategyCapabilities()


def strategy_capabilities(hook: Any, who: str = "the strategy") -> StrategyCapabilities:
    """The answer of ``hook.weft_strategy_capabilities()``; ``None`` means :data:`FALLBACK`.

    :param hook: a plugin manager's hook relay (``fabric.hook``).
    :param who: how messages name the strategy.
    :raises TypeError: when the hook answers something other than a record.
    """
    answer = hook.weft_strategy_capabilities()
    if answer is None:
        return FALLBACK
    if not isinstance(answer, StrategyCapabilities):
        raise TypeError(
            f"weft_strategy_capabilities of {who} returned {type(answer).__name__}; it must return a "
            "weft.records.StrategyCapabilities (or None for the documented fallback)"
        )
    return answer
