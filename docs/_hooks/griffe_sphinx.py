"""Build-time helper for the API pages: make weft's Sphinx-flavoured docstrings read well in MkDocs.

weft's docstrings use ``:param:`` fields (which mkdocstrings parses), plus a few
reStructuredText forms it does not: cross-reference roles (``:func:`x```),
``Example::`` literal blocks and ``.. versionadded::``. Before mkdocstrings parses a
docstring, this griffe extension rewrites those forms into Markdown, and moves the
text that follows the field list (the example) above it, so that it is not read as
part of the last field's description.

Loaded through ``extensions:`` in ``mkdocs.yml``; it is not part of the weft package.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_FIELD = re.compile(r"^:(param|parameter|arg|argument|key|keyword|type|raises?|except|exception|var|ivar|cvar|vartype|returns?|rtype|yields?)\b")
_ROLE = re.compile(r":(?:py:)?(func|class|meth|data|mod|attr|exc|obj):`(~?)([\w.]+)`")
_VERSION = re.compile(r"^\.\.\s+(versionadded|versionchanged|deprecated)::\s*(.*)$")
_VERSION_WORDS = {"versionadded": "Added in version", "versionchanged": "Changed in version", "deprecated": "Deprecated since version"}

_FIRST_RESULT = (
    "*First result:* pluggy stops at the first implementation that returns something other than `None`."
)

#: Objects rendered on the API pages, so a role naming them can become a link.
#: A link to anything else would be an unresolved reference, which fails a strict build.
LINKABLE_PREFIXES = ("weft.hookspecs.weft_", "weft.fabric.Fabric", "weft.records.", "weft.errors.")


def _target(name: str) -> str:
    """The full dotted path a role's text most likely names."""
    if name.startswith("weft_"):
        return f"weft.hookspecs.{name}"
    if name == "Fabric" or name.startswith("Fabric."):
        return f"weft.fabric.{name}"
    if name == "weft.Fabric" or name.startswith("weft.Fabric."):
        return "weft.fabric." + name[len("weft.") :]
    return name


def convert_roles(text: str, known: set[str]) -> str:
    """``:func:`~a.b``` -> ``[`b`][a.b]`` when ``a.b`` is rendered, else plain code."""

    def one(match: re.Match[str]) -> str:
        _, tilde, name = match.groups()
        shown = name.rsplit(".", 1)[-1] if tilde else name
        target = _target(name)
        if target in known:
            return f"[`{shown}`][{target}]"
        return f"`{shown}`"

    return _ROLE.sub(one, text)


def _literal_blocks(lines: list[str]) -> list[str]:
    """``Example::`` + an indented block -> ``Example:`` + a fenced Python block; versions -> a sentence."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        version = _VERSION.match(line.strip())
        if version:
            word, rest = version.groups()
            out.append(f"*{_VERSION_WORDS[version.group(1)]} {rest.strip()}.*")
            i += 1
            continue
        if line.rstrip().endswith("::") and not _FIELD.match(line.strip()):
            intro = line.rstrip()[:-1]
            if intro.strip() != ":":
                out.append(intro)
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            code = textwrap.dedent("\n".join(b for b in block)).strip("\n")
            out += ["", "```python", *code.splitlines(), "```", ""]
            continue
        out.append(line)
        i += 1
    return out


def convert(doc: str, known: set[str]) -> str:
    """Rewrite one docstring (already dedented) for mkdocstrings' Sphinx parser."""
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if _FIELD.match(line)), None)
    if start is None:
        head, fields, tail = lines, [], []
    else:
        end = start
        while end < len(lines) and lines[end].strip() and (_FIELD.match(lines[end]) or lines[end][:1].isspace()):
            end += 1
        head, fields, tail = lines[:start], lines[start:end], lines[end:]
    body = _literal_blocks(head + ([""] if head and tail else []) + tail)
    while body and not body[-1].strip():
        body.pop()
    text = "\n".join(body + ([""] if fields else []) + fields)
    return convert_roles(text, known)


_SENTINEL_DEFAULT = re.compile(r"^_Default(?:Int)?\((.*)\)$")


def _show_plain_defaults(obj: Any) -> None:
    """``Fabric(strategy=_Default('auto'))`` -> ``'auto'``: the marker only means 'left unset'."""
    function = obj.members.get("__init__") if obj.is_class else obj if obj.is_function else None
    if function is None or not getattr(function, "is_function", False):
        return
    for parameter in function.parameters:
        match = _SENTINEL_DEFAULT.match(str(parameter.default)) if parameter.default is not None else None
        if match:
            parameter.default = match.group(1)


def _is_attrs(cls: Any) -> bool:
    return any(str(d.value).split("(")[0] in ("attrs.define", "attrs.frozen", "attrs.mutable", "attr.s", "define", "frozen") for d in cls.decorators)


class SphinxToMarkdown(griffe.Extension):
    """Rewrite each docstring once its object is loaded."""

    def __init__(self) -> None:
        super().__init__()
        self._objects: list[Any] = []

    def on_instance(self, *, node: Any, obj: Any, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            self._objects.append(obj)

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        # Every object of the package is known now, so links can be checked against them.
        known = {o.path for o in self._objects if o.path.startswith(LINKABLE_PREFIXES)}
        for obj in self._objects:
            _show_plain_defaults(obj)
            value = obj.docstring.value
            if obj.is_class and ("__init__" not in obj.members or _is_attrs(obj)):
                # attrs classes: griffe cannot see the generated __init__'s parameters, so their
                # :param: fields are documented as the class's attributes.
                value = re.sub(r"^:param ", ":ivar ", value, flags=re.M)
            if obj.is_function and any("firstresult=True" in str(d.value) for d in obj.decorators):
                value = _FIRST_RESULT + "\n\n" + value if "\n" not in value else value.replace("\n", "\n\n" + _FIRST_RESULT + "\n", 1)
            obj.docstring.value = convert(value, known)
        self._objects.clear()
