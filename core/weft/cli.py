"""The ``weft`` command: ``weft run``, ``weft plugins``, ``weft env``, ``weft consolidate``.

Each subcommand lives in its own module and is imported only when used.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any, Sequence

from weft.errors import DOCS, ConfigurationError, WeftError


class UsageError(ConfigurationError):
    """A command line ``weft`` cannot parse: an unknown flag, a missing argument, a bad value.
    The message names the flag and the value; the command exits with status 2."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """An argument parser that, with ``raise_errors=True``, raises :class:`UsageError` instead of
    exiting, so ``weft`` can be called as a function and its errors tested (:func:`main` prints
    them and returns 2). Without it, it exits with status 2 as argparse does."""

    def __init__(self, *args: Any, raise_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raise_errors = raise_errors

    def error(self, message: str) -> None:  # type: ignore[override]
        if self.raise_errors:
            raise UsageError(message, self)
        super().error(message)


# Values `--strategy-option KEY=VALUE` turns into Python objects; anything else stays a string.
_LITERAL_WORDS = {"true": True, "false": False, "none": None}


def parse_option_value(text: str) -> Any:
    """``VALUE`` of ``--strategy-option KEY=VALUE``: an int, float, bool (``True``/``true``) or
    ``None`` literal becomes that object; a quoted literal (``'"30"'``) the string inside; anything
    else is kept as the string typed."""
    import ast

    if text.strip().lower() in _LITERAL_WORDS:
        return _LITERAL_WORDS[text.strip().lower()]
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, (bool, int, float, str, type(None))) else text


def parse_strategy_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> ``(KEY, value)``; raises ``argparse.ArgumentTypeError`` naming what is wrong."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=VALUE with KEY a parameter name of the strategy (e.g. --strategy-option timeout=60)"
        )
    return key, parse_option_value(value)


class StrategyOptionsAction(argparse.Action):
    """Collects repeated ``--strategy-option KEY=VALUE`` into one dict; a key given twice is an error."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        key, value = values
        options = dict(getattr(namespace, self.dest, None) or {})
        if key in options:
            parser.error(f"argument {option_string}: {key!r} given twice ({options[key]!r} and {value!r}); keep one")
        options[key] = value
        setattr(namespace, self.dest, options)


def _plugins(args: argparse.Namespace) -> int:
    from weft import registry

    rows = []
    for kind in registry.KINDS:
        for name, records in sorted(registry.records(kind).items()):
            for record in records:
                status = "conflict" if len(records) > 1 else "registered"
                reason = ""
                if args.check:
                    try:
                        registry.create(kind, f"{record.distribution}:{name}" if len(records) > 1 and record.distribution else name)
                        status = "conflict" if len(records) > 1 else "loadable"
                    except WeftError as exc:
                        status, reason = "failed", str(exc)
                compat = _compatibility(record)
                if compat:
                    status, reason = "incompatible", compat
                rows.append(
                    {
                        "kind": kind,
                        "name": name,
                        "distribution": record.distribution or "(registered in code)",
                        "version": record.version or "",
                        "value": record.value,
                        "status": status,
                        "reason": reason,
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    widths = {k: max([len(k)] + [len(str(r[k])) for r in rows]) for k in ("kind", "name", "distribution", "version", "status")}
    header = "  ".join(k.upper().ljust(widths[k]) for k in widths)
    print(header)
    for row in rows:
        line = "  ".join(str(row[k]).ljust(widths[k]) for k in widths)
        print(line + (f"  {row['reason']}" if row["reason"] else ""))
    if not args.check:
        print("\n(status from metadata only; add --check to import each plugin)")
    print(f"Docs: {DOCS}/plugins.md")
    return 0


def _compatibility(record: object) -> str:
    """Why a plugin's declared core range excludes this weft, or ''."""
    from weft.compat import incompatibility

    return incompatibility(record)


def _env(args: argparse.Namespace) -> int:
    import platform

    import weft
    from weft import registry

    info: dict[str, object] = {"python": platform.python_version(), "platform": platform.platform(), "weft": weft.__version__}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = torch.cuda.is_available()
        info["cuda_devices"] = torch.cuda.device_count()
        info["mps_available"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        info["distributed_available"] = torch.distributed.is_available()
    except ImportError as exc:  # weft env is for bug reports: say what is missing rather than crash
        info["torch"] = f"not importable: {exc}"
    plugins = {}
    for kind in registry.KINDS:
        for name, records in registry.records(kind).items():
            for record in records:
                if record.distribution:
                    plugins[record.distribution] = record.version
    info["plugins"] = plugins
    from weft.selection import _available

    info["accelerators_available"] = [n for n in registry.names("accelerators") if _available(n)]
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:24} {value}")
    return 0


def build_parser(raise_errors: bool = False) -> argparse.ArgumentParser:
    """The ``weft`` command's parser; ``raise_errors=True`` makes a bad command line raise
    :class:`UsageError` (naming the flag and value) instead of exiting with status 2."""
    parser = _Parser(prog="weft", description="Run and inspect weft training jobs.", raise_errors=raise_errors)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=functools.partial(_Parser, raise_errors=raise_errors))

    p = sub.add_parser("plugins", help="list installed plugins (kind, name, distribution, version, status)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--check", action="store_true", help="import every plugin to check that it loads")
    p.set_defaults(func=_plugins)

    p = sub.add_parser("env", help="print versions and available accelerators, for bug reports")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_env)

    from weft import launch

    launch.add_run_parser(sub)

    from weft import consolidate

    consolidate.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``weft`` command with ``argv`` (default: the process's arguments); returns its exit status.

    2 for a usage or configuration error (one line naming the flag or value), 1 when a job failed,
    128 + N when ``weft run`` was stopped by signal N.
    """
    parser = build_parser(raise_errors=True)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except WeftError as exc:
        print(f"weft {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
