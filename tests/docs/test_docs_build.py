"""The docs site builds with ``mkdocs build --strict``: no broken link, no missing page, no
docstring the hook reference cannot render."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docs_samples import ROOT

MKDOCS_YML = ROOT / "mkdocs.yml"


def _mkdocs() -> list[str]:
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
        import mkdocstrings_handlers.python  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"mkdocs / mkdocstrings-python not installed ({exc}); pip install -r requirements-dev.txt")
    return [sys.executable, "-m", "mkdocs"]


@pytest.mark.timeout(180)
def test_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [*_mkdocs(), "build", "--strict", "--config-file", str(MKDOCS_YML), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)
    hooks = (site / "hooks.html").read_text(encoding="utf-8")
    # The hook reference is generated from hookspecs.py: every hook has its own entry.
    from weft import hookspecs

    names = [n for n in dir(hookspecs) if n.startswith("weft_") and callable(getattr(hookspecs, n))]
    assert len(names) > 30
    missing = [n for n in names if f'id="weft.hookspecs.{n}"' not in hooks]
    assert not missing, f"hooks missing from the generated reference: {missing}"
    # The Sphinx-only markup of the docstrings was turned into Markdown, not shown raw.
    for raw in (":func:`", ":class:`", ".. versionadded::", "Example::"):
        assert raw not in hooks, f"{raw!r} left unconverted in hooks.html"
    assert "First result" in hooks
    shutil.rmtree(site, ignore_errors=True)


def test_docs_link_named_in_messages_exists() -> None:
    """`weft plugins` and the registry's errors point at {DOCS}/plugins.md: that page must exist."""
    from weft.errors import DOCS

    assert not DOCS.startswith(("http://", "https://")), "DOCS should name the pages in this repository"
    assert (ROOT / DOCS / "plugins.md").is_file()


def test_hook_page_lists_the_required_hooks() -> None:
    """docs/hooks.md names, per kind, the hooks the conformance kit requires: no more, no fewer."""
    import re

    from weft.testing import REQUIRED_HOOKS

    text = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    for kind, hooks in REQUIRED_HOOKS.items():
        line = re.search(rf"^- {kind}: (.*?)(?=^- |^\s*$)", text, flags=re.M | re.S)
        assert line, f"docs/hooks.md has no '- {kind}:' entry"
        listed = re.findall(r"`(weft_\w+)`", line.group(1))
        assert sorted(listed) == sorted(hooks), f"{kind}: docs list {listed}, the kit requires {list(hooks)}"
