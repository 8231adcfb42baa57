"""Every ``Example::`` block of weft.hookspecs is code that could run: it compiles, defines the
hook it documents with arguments the specification has, every ``weft.*`` / ``torch.*`` / ``os.*``
/ ``contextlib.*`` attribute it names exists, and every other name it uses is defined (a builtin,
a name of ``weft``'s top level, ``hookimpl``, or something the block itself binds).

In-process and cheap: the blocks are executed only to define their functions, never called.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import inspect
import os
import re
import textwrap
from typing import Any

import pytest
import torch

import weft
from weft import hookspecs

# What an example may assume is imported (the hook reference says so above the examples).
MODULES = {"torch": torch, "weft": weft, "os": os, "contextlib": contextlib}


def _examples() -> list[tuple[str, str]]:
    found = []
    for name, spec in vars(hookspecs).items():
        if name.startswith("weft_") and hasattr(spec, f"{hookspecs.PROJECT}_spec"):
            for block in re.findall(r"Example::\n\n((?:[ \t]+.*\n|[ \t]*\n)+)", inspect.getdoc(spec) + "\n"):
                found.append((name, textwrap.dedent(block)))
    return found


EXAMPLES = _examples()


def _namespace() -> dict[str, Any]:
    names = {n: getattr(weft, n) for n in weft.__all__ if n != "__version__"}
    return {**names, **MODULES, "hookimpl": hookspecs.hookimpl}


def _resolve(dotted: list[str]) -> tuple[str | None, Any]:
    """Follow ``torch.nn.utils.x`` attribute by attribute, importing submodules on the way:
    ``(the first part that does not exist, None)``, or ``(None, the object)``."""
    value: Any = MODULES[dotted[0]]
    path = dotted[0]
    for part in dotted[1:]:
        path = f"{path}.{part}"
        if hasattr(value, part):
            value = getattr(value, part)
            continue
        try:
            value = importlib.import_module(path)
        except ImportError:
            return path, None
    return None, value


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in MODULES:
        return [node.id, *reversed(parts)]
    return None


def problems_of(hook: str, code: str) -> list[str]:
    """What keeps ``code`` (the example of ``hook``) from running, one line each."""
    try:
        tree = ast.parse(code)
        compiled = compile(tree, f"<example of {hook}>", "exec")
    except SyntaxError as exc:
        return [f"does not compile: {exc}"]
    problems = []
    # Attribute chains rooted at a module (only the longest of each chain).
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            dotted = _chain(node)
            missing = _resolve(dotted)[0] if dotted else None
            if missing:
                problems.append(f"names {'.'.join(dotted)}, but {missing} does not exist")
    # Calls of weft's functions: the arguments fit the signature.
    for node in ast.walk(tree):
        dotted = _chain(node.func) if isinstance(node, ast.Call) else None
        if not dotted or dotted[0] != "weft" or _resolve(dotted)[0]:
            continue
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            continue
        try:
            inspect.signature(_resolve(dotted)[1]).bind(*node.args, **{k.arg: k.value for k in node.keywords})
        except TypeError as exc:
            problems.append(f"calls {'.'.join(dotted)} with arguments its signature does not take: {exc}")
        except ValueError:
            pass  # no signature to check against
    # Free names: each must be bound somewhere.
    bound = set(dir(builtins)) | set(_namespace())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
            bound.update(a.arg for a in node.args.args + node.args.kwonlyargs)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            problems.append(f"uses {node.id!r}, which nothing defines (qualify it, e.g. weft.x.{node.id})")
    if problems:
        return problems
    namespace = _namespace()
    exec(compiled, namespace)  # defines the example's functions; calls nothing
    function = namespace.get(hook)
    if function is None:
        return [f"does not define {hook}"]
    if not hasattr(function, f"{hookspecs.PROJECT}_impl"):
        problems.append(f"{hook} is not marked @hookimpl")
    spec_args = set(inspect.signature(getattr(hookspecs, hook)).parameters)
    extra = [a for a in inspect.signature(function).parameters if a != "self" and a not in spec_args]
    if extra:
        problems.append(f"{hook} takes {extra}, which the specification does not have ({sorted(spec_args)})")
    return problems


def test_every_hook_has_an_example() -> None:
    with_examples = {hook for hook, _ in EXAMPLES}
    hooks = {n for n, v in vars(hookspecs).items() if n.startswith("weft_") and hasattr(v, f"{hookspecs.PROJECT}_spec")}
    assert len(EXAMPLES) >= 40
    assert hooks - with_examples == set()


@pytest.mark.parametrize(("hook", "code"), EXAMPLES, ids=[hook for hook, _ in EXAMPLES])
def test_example_could_run(hook: str, code: str) -> None:
    problems = problems_of(hook, code)
    assert not problems, f"the Example:: of {hook} in weft/hookspecs.py:\n{code}\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # a function that does not exist, and (what weft_strategy_launch's example said before) one
        # called with arguments it does not take
        ("@hookimpl\ndef weft_strategy_launch(self, fabric, function):\n    return weft.launch.run_elastik(fabric)\n",
         "weft.launch.run_elastik does not exist"),
        ("@hookimpl\ndef weft_strategy_launch(self, fabric, function):\n    return weft.launch.run_elastic(fabric, function)\n",
         "calls weft.launch.run_elastic with arguments"),
        # what the convert_input example said before: a helper defined nowhere
        ("@hookimpl\ndef weft_strategy_launch(self, fabric, function):\n    return convert_floating_tensors(fabric)\n",
         "'convert_floating_tensors'"),
        ("@hookimpl\ndef weft_strategy_launch(self, fabric, function, processes):\n    return None\n", "processes"),
        ("def weft_strategy_launch(self, fabric, function):\n    return None\n", "not marked"),
        ("@hookimpl\ndef weft_strategy_launch(self, fabric, function)\n    return None\n", "does not compile"),
    ],
)
def test_the_check_catches_examples_that_cannot_run(code: str, expected: str) -> None:
    problems = problems_of("weft_strategy_launch", code)
    assert problems and any(expected in p for p in problems), problems
