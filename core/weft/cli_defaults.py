"""The launchers' flags as defaults of ``Fabric(...)``: ``weft run``'s ``WEFT_CLI_*`` and Lightning's ``LT_*``.

An argument the script leaves unset (``_Default``) takes the launcher's flag; an explicit,
different one is an error (``_apply_cli_defaults``). ``weft run --strategy-option`` reaches the
strategy through ``CLI_STRATEGY_OPTIONS`` (``_cli_strategy_options``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from weft.errors import ConfigurationError
from weft.selection import _plugin_kinds


class _Default(str):
    """A default string argument: equal to its text, but recognisably 'left unset'."""


class _DefaultInt(int):
    """A default int argument, recognisably 'left unset'."""


# `weft run` passes its flags to the script's Fabric through these variables.
CLI_ENV = {
    "accelerator": "WEFT_CLI_ACCELERATOR",
    "strategy": "WEFT_CLI_STRATEGY",
    "devices": "WEFT_CLI_DEVICES",
    "num_nodes": "WEFT_CLI_NUM_NODES",
    "precision": "WEFT_CLI_PRECISION",
}
# `weft run --strategy-option KEY=VALUE` (repeatable): a JSON object of keyword arguments for the
# strategy the script creates by name.
CLI_STRATEGY_OPTIONS = "WEFT_CLI_STRATEGY_OPTIONS"
# Lightning's launcher (`fabric run`, formerly `lightning run model`) passes its flags through these,
# so a script written for it keeps them under weft. It always sets devices and num_nodes (default 1)
# and marks the processes it started with LT_CLI_USED=1.
LIGHTNING_CLI_ENV = {
    "accelerator": "LT_ACCELERATOR",
    "strategy": "LT_STRATEGY",
    "devices": "LT_DEVICES",
    "num_nodes": "LT_NUM_NODES",
    "precision": "LT_PRECISION",
}
LIGHTNING_CLI_USED = "LT_CLI_USED"
# An argument still holding one of these was left to the command line (Lightning's defaults, so an
# explicit devices="auto" defers to `--devices` as it does there; precision=None is the default).
_LEFT_UNSET = {"accelerator": "auto", "strategy": "auto", "devices": "auto", "num_nodes": "1", "precision": "None"}


def _lightning_cli_used() -> bool:
    """Whether Lightning's `fabric run` started this process (it sets LT_CLI_USED=1)."""
    return os.environ.get(LIGHTNING_CLI_USED, "0").strip() not in ("", "0")


def _cli_flags(arg: str) -> list[tuple[str, str]]:
    """The launchers' values for one argument: ``[(the flag as typed, value)]``."""
    flag = arg.replace("_", "-")
    found = []
    if os.environ.get(CLI_ENV[arg]) is not None:
        found.append((f"weft run --{flag} {os.environ[CLI_ENV[arg]]}", os.environ[CLI_ENV[arg]]))
    if os.environ.get(LIGHTNING_CLI_ENV[arg]) is not None:
        found.append((f"fabric run --{flag} {os.environ[LIGHTNING_CLI_ENV[arg]]}", os.environ[LIGHTNING_CLI_ENV[arg]]))
    return found


def _apply_cli_defaults(given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """Take the launcher's flags (`weft run`'s, or Lightning's `fabric run`'s) as defaults.

    As in Lightning: an argument the script left at its default takes the flag; an explicit,
    different one is an error. (Lightning lets LT_* variables silently override the script when
    LT_CLI_USED is not set; weft reports that conflict too.)

    :returns: the arguments, and for each one taken from a launcher its value and where it came
        from (``("lots", "WEFT_CLI_DEVICES='lots', set by `weft run --devices lots`")``).
    """
    out = dict(given)
    sources: dict[str, tuple[str, str]] = {}
    for arg in CLI_ENV:
        flags = _cli_flags(arg)
        if not flags:
            continue
        if len({value for _, value in flags}) > 1:
            raise ConfigurationError(f"`{flags[0][0]}` and `{flags[1][0]}` disagree; set {arg} through one launcher only")
        typed, cli = flags[0]
        value = given[arg]
        if isinstance(value, (_Default, _DefaultInt)) or (not _plugin_kinds(value) and str(value) == _LEFT_UNSET[arg]):
            if arg == "num_nodes":
                try:
                    cli = int(cli)
                except ValueError:
                    raise ConfigurationError(f"`{typed}`: the number of nodes must be an integer") from None
            out[arg] = cli
            env = CLI_ENV[arg] if typed.startswith("weft run") else LIGHTNING_CLI_ENV[arg]
            sources[arg] = (os.environ[env], f"{env}={os.environ[env]!r}, set by `{typed}`")
            continue
        shown = getattr(value, "name", value)
        if str(shown) != cli:
            default = (
                " (`fabric run` passes --devices and --num-nodes even when they are not typed; both default to 1)"
                if typed.startswith("fabric run") and arg in ("devices", "num_nodes")
                else ""
            )
            raise ConfigurationError(
                f"`{typed}` conflicts with Fabric({arg}={value!r}) in the script{default}. Remove one of them "
                "(the command line only fills arguments the script leaves unset)."
            )
    return out, sources


@contextlib.contextmanager
def _naming_cli_sources(sources: dict[str, tuple[str, str]]) -> Iterator[None]:
    """Re-raise a configuration error about a launcher-supplied value with the variable it came from."""
    try:
        yield
    except ConfigurationError as exc:
        named = [where for value, where in sources.values() if value in str(exc)]
        if not named or not exc.args or not isinstance(exc.args[0], str):
            raise
        raise type(exc)(f"{exc.args[0]} (the value comes from {'; '.join(named)})") from exc


def _cli_strategy_options(strategy: Any) -> dict[str, Any]:
    """The options ``weft run --strategy-option KEY=VALUE`` passed (through
    :data:`CLI_STRATEGY_OPTIONS`) for the strategy the script creates by name."""
    text = os.environ.get(CLI_STRATEGY_OPTIONS)
    if not text:
        return {}
    import json

    try:
        options = json.loads(text)
    except ValueError:
        options = None
    if not isinstance(options, dict):
        raise ConfigurationError(
            f"{CLI_STRATEGY_OPTIONS}={text!r} is not a JSON object of options; `weft run --strategy-option KEY=VALUE` "
            "sets it. Unset the variable or pass the options through weft run."
        )
    if options and not isinstance(strategy, str):
        raise ConfigurationError(
            f"`weft run --strategy-option` gives options {options} ({CLI_STRATEGY_OPTIONS}), but the script passes the "
            f"strategy object {strategy!r:.80}, which is already built: set them on that object, or let the script "
            "select the strategy by name (Fabric(strategy=NAME) or --strategy NAME)."
        )
    return options
