"""Errors weft raises. Each subclasses the built-in type a caller would naturally catch: the one
Lightning Fabric raises in the same situation, so ``except`` clauses written for it keep working."""

from __future__ import annotations

# Where the guide lives: the Markdown pages under docs/ in the weft source repository
# (`mkdocs build` renders them as a site). Messages append a page name, e.g. f"{DOCS}/plugins.md".
DOCS = "docs"


class WeftError(Exception):
    """Base class of every error weft raises on purpose."""


class ConfigurationError(WeftError, ValueError):
    """A value passed to ``Fabric(...)`` or ``weft run`` that cannot be honoured."""


class ConfigurationTypeError(ConfigurationError, TypeError):
    """A ``Fabric(...)`` argument of the wrong type (``devices=None``, ``plugins=[object()]``...),
    where Lightning Fabric raises ``TypeError``."""


class PluginNotFoundError(ConfigurationError, LookupError):
    """No installed plugin provides the requested name."""


class PluginConflictError(ConfigurationError):
    """Two distributions register the same name for the same kind of plugin."""


class PluginContractError(ConfigurationError):
    """A plugin breaks the hook contract: a ``weft_*`` method that is no hook (a misspelling), a hook
    method not marked ``@weft.hookimpl``, an argument its specification lacks, or a hook its kind
    requires left out. Raised when the plugin is registered (``Fabric(...)``, the conformance kit).

    :ivar plugin: the plugin object at fault.
    :ivar reason: what is wrong, naming the hook(s), without the plugin's description.
    """

    def __init__(self, message: str, plugin: object = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.reason = message if reason is None else reason


class PluginLoadError(WeftError, ImportError):
    """A plugin's entry point failed to import or to build the plugin."""


class MisuseError(WeftError, RuntimeError):
    """A call made in an order or on an object weft cannot work with."""


# Lightning Fabric raises ValueError or TypeError for most misuse; these keep `except` clauses
# written for it working, while still being MisuseError (a RuntimeError) for weft's own code.
class MisuseValueError(MisuseError, ValueError):
    """A call given a value it cannot use: an object set up twice, nothing to set up, a filter key
    that is not in the state."""


class MisuseTypeError(MisuseError, TypeError):
    """A call given the wrong kind of object: a model Fabric did not set up, a non-callable to
    ``launch``, a state that is not a dict."""


class ReduceOpError(MisuseValueError, AttributeError):
    """``reduce_op`` names no reduction weft performs. Also an ``AttributeError``: what Lightning's
    DDP strategy raises for an unknown name."""


class NonFiniteNormError(WeftError, RuntimeError):
    """``clip_gradients(max_norm=..., error_if_nonfinite=True)`` found an infinite or NaN total
    gradient norm (a ``RuntimeError``, as ``torch.nn.utils.clip_grad_norm_`` raises)."""


class CheckpointError(WeftError, ValueError):
    """A checkpoint that is missing, incomplete, corrupt or does not match the state to restore."""


class CollectiveTimeoutError(WeftError, TimeoutError):
    """Processes did not all arrive at a collective operation within its timeout."""


class LaunchError(WeftError, RuntimeError):
    """Starting the processes of a job failed, or one of them failed."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


class CheckpointUnreadableError(CheckpointError, RuntimeError):
    """The file is damaged (a checksum, the zip structure) or is not a checkpoint at all
    (a ``RuntimeError``, as ``torch.load`` raises for such files)."""


class CheckpointStructureError(CheckpointError, AttributeError):
    """The checkpoint is not the dict of entries ``fabric.load`` restores from (Lightning raises an
    ``AttributeError`` when it treats such a file as a dict)."""


class CheckpointKeyError(CheckpointError, KeyError):
    """An entry the state asks for is not in the checkpoint, or an entry lacks a key its object needs."""

    def __str__(self) -> str:  # KeyError would print the message quoted, as a repr
        return str(self.args[0]) if self.args else ""


class CheckpointMismatchError(CheckpointError, RuntimeError):
    """A saved model's entries do not fit the model being restored (``Module.load_state_dict``'s
    ``RuntimeError``)."""


class CheckpointTypeError(CheckpointError, TypeError):
    """An entry of the checkpoint has the wrong type for the object restored from it."""


class DataLoaderSetupError(MisuseTypeError):
    """``setup_dataloaders`` got something it cannot work with: not a DataLoader, or a loader whose
    sampler, batch sampler or class it cannot rebuild faithfully to split the data between ranks."""


class MisuseAttributeError(MisuseError, AttributeError):
    """A named attribute that does not exist where the call needs it (e.g. marking a missing method)."""


class StrategyClassNotFoundError(PluginNotFoundError, ImportError):
    """``from weft.strategies import NameStrategy`` names a class no installed plugin provides (an
    ``ImportError``, so the message says which distribution to install instead of Python's generic one)."""


class NoLoggerError(MisuseError, IndexError):
    """``fabric.logger`` on a Fabric without loggers (an ``IndexError``, as in Lightning Fabric)."""


class LogDictTypeError(MisuseTypeError, AttributeError):
    """``fabric.log_dict()`` given something other than a dict. Also an ``AttributeError``: what
    Lightning Fabric raises (it calls ``metrics.items()``)."""

class ModuleTypeError(MisuseTypeError, AttributeError):
    """``setup``/``setup_module`` given something other than a ``torch.nn.Module``. Also an
    ``AttributeError``: what Lightning Fabric raises (it reads ``module.named_parameters``)."""


class OptimizerTypeError(MisuseTypeError, AttributeError):
    """``clip_gradients`` given something other than an optimizer (an ``AttributeError`` in
    Lightning Fabric, which reads ``optimizer.param_groups``)."""


class LossTypeError(MisuseTypeError, AttributeError):
    """``fabric.backward()`` given something other than a tensor (an ``AttributeError`` in
    Lightning Fabric, which calls ``tensor.backward()``)."""


class BackwardError(MisuseError):
    """``fabric.backward(loss)`` with a loss autograd cannot differentiate as asked: one that does
    not require grad, holds several elements, or whose graph was freed by an earlier backward."""


class CheckpointPathTypeError(CheckpointNotFoundError, TypeError):
    """``fabric.load(path)`` with a path that is not a str or ``os.PathLike`` (Lightning Fabric
    raises ``FileNotFoundError`` for ``None``)."""


class CheckpointEmptyError(CheckpointError, EOFError):
    """``fabric.load`` of an empty file (Lightning Fabric lets torch raise ``EOFError``)."""


class CheckpointWriteError(CheckpointError, OSError):
    """``fabric.save`` could not write the checkpoint at its path (also the ``OSError`` subclass
    the file system raised, below, so ``except FileExistsError`` clauses keep working)."""


class CheckpointPathIsFileError(CheckpointWriteError, FileExistsError):
    """A folder on the way to the checkpoint's path is a file."""


class CheckpointPathNotDirectoryError(CheckpointWriteError, NotADirectoryError):
    """A folder further up the checkpoint's path is a file."""


class CheckpointPathIsDirectoryError(CheckpointWriteError, IsADirectoryError):
    """The checkpoint's path is a folder, and the strategy writes a single file."""


class CheckpointPermissionError(CheckpointWriteError, PermissionError):
    """The checkpoint's folder cannot be written by this process."""
