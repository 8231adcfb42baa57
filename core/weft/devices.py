"""``strategy.root_device`` for strategy plugins: the device this process computes on.

Lightning Fabric scripts read ``fabric.strategy.root_device``; a strategy that inherits
:class:`RootDevice` answers it. Part of the plugin API.

.. versionadded:: 0.2
"""

from __future__ import annotations

from typing import Any

from weft.errors import ConfigurationError
from weft.hookspecs import hookimpl


class RootDevice:
    """Gives a strategy Lightning's ``strategy.root_device``: the device this process computes on.

    It is recorded when the Fabric is created and again when the process is set up (after
    ``fabric.launch()`` a process's rank, and with it its device, is final). The recording
    hooks go by their own method names (pluggy ``specname``), so a strategy that implements
    ``weft_validate`` or ``weft_strategy_setup_environment`` itself keeps them.

    .. versionadded:: 0.1
    """

    _root_device = None

    @property
    def root_device(self) -> Any:
        """The ``torch.device`` of this process."""
        if self._root_device is None:
            from weft.errors import MisuseError

            raise MisuseError(
                f"{type(self).__name__}.root_device is not known yet: this process had no device when its Fabric "
                "was created. Read it after fabric.launch(), which sets the process up."
            )
        return self._root_device

    @hookimpl(specname="weft_validate")
    def _record_device_at_creation(self, fabric: Any) -> None:
        try:
            self._root_device = fabric.device
        except ConfigurationError:
            pass  # this process has no device yet (a launcher); fabric.launch() records it

    @hookimpl(specname="weft_strategy_setup_environment")
    def _record_device(self, fabric: Any) -> None:
        self._root_device = fabric.device
