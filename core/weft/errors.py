"""Errors weft raises. Each subclasses the built-in type a caller would naturally catch."""

from __future__ import annotations

# Where the guide lives: the Markdown pages under docs/ in the weft source repository
# (`mkdocs build` renders them as a site). Messages append a page name, e.g. f"{DOCS}/plugins.md".
DOCS = "docs"


class WeftError(Exception):
    """Base class of every error weft raises on purpose."""


class ConfigurationError(WeftError, ValueError):
    """A value passed to ``Fabric(...)`` or ``weft run`` that cannot be honoured."""


class PluginNotFoundError(ConfigurationError, LookupError):
    """No installed plugin provides the requested name."""


class PluginConflictError(ConfigurationError):
    """Two distributions register the same name for the same kind of plugin."""


class PluginLoadError(WeftError, ImportError):
    """A plugin's entry point failed to import or to build the plugin."""


class MisuseError(WeftError, RuntimeError):
    """A call made in an order or on an object weft cannot work with."""


class CheckpointError(WeftError, ValueError):
    """A checkpoint that is missing, incomplete, corrupt or does not match the state to restore."""


class CollectiveTimeoutError(WeftError, TimeoutError):
    """Processes did not all arrive at a collective operation within its timeout."""


class LaunchError(WeftError, RuntimeError):
    """Starting the processes of a job failed, or one of them failed."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""
