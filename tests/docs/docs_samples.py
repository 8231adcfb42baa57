"""Find the code samples in the docs and say how each one is run.

Every fenced block in ``docs/*.md`` must name its language. What happens to it:

``python``
    Written to a file in the page's scratch folder and run with this interpreter in
    a subprocess (with a timeout). Blocks of one page run in order, in one folder, so
    a later block may read what an earlier one wrote (a checkpoint, a script).
    A block that calls ``fabric.launch()`` with ``devices=2`` starts its processes for
    real: multi-process samples are complete scripts.
``bash`` / ``console`` / ``shell``
    Run with ``bash -e`` in the page's scratch folder, with the virtual environment's
    ``bin/`` first on ``PATH`` (so ``weft``, ``torchrun`` and ``python`` are the
    installed ones).
``toml``
    Parsed, so a packaging snippet cannot be invalid.
``text``
    Output shown for reading; not run.

Directives are HTML comments (invisible in the rendered site) on the lines just
before a block, one per comment:

``<!-- docs-test: skip REASON -->``
    Do not run the block; the test reports it as skipped with REASON.
``<!-- docs-test: file NAME -->``
    Write the block to NAME instead of running it; a later shell block of the same
    page must run it (checked).
``<!-- docs-test: expect TEXT -->``
    The block's output (stdout and stderr) must contain TEXT.
``<!-- docs-test: timeout SECONDS -->``
    Allow more (or less) than the default time.

``README.md`` is read too: its Python blocks run, with :data:`README_PRELUDE`
defining the model, optimizer, loss and data its quick-start snippet uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

RUN_LANGUAGES = {"python", "bash", "console", "shell", "toml"}
READ_ONLY_LANGUAGES = {"text"}
DEFAULT_TIMEOUT = 120

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[^\s`]*)[^`]*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<name>\w+)\s*(?P<arg>.*?)\s*-->\s*$")
DIRECTIVES = {"skip", "file", "expect", "timeout"}

#: The README's quick-start is a fragment of a loop; this defines the names it uses
#: (a tiny classifier and data set), so the fragment runs as the complete script a user would have.
README_PRELUDE = '''\
import torch
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
criterion = torch.nn.CrossEntropyLoss()
train_loader = DataLoader(TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,))), batch_size=8)
'''


@dataclass
class Sample:
    """One fenced block and what its directives ask."""

    page: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None = None
    file: str | None = None
    expect: list[str] = field(default_factory=list)
    timeout: int = DEFAULT_TIMEOUT

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


class SampleError(ValueError):
    """A docs page whose blocks or directives the runner cannot honour."""


def parse(path: Path) -> list[Sample]:
    """Every fenced block of one Markdown file, with the directives just above it."""
    page = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    samples: list[Sample] = []
    pending: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        if directive:
            name, arg = directive.group("name"), directive.group("arg")
            if name not in DIRECTIVES:
                raise SampleError(f"{page}:{i + 1}: unknown directive {name!r} (known: {', '.join(sorted(DIRECTIVES))})")
            if name in ("skip", "file", "timeout") and not arg:
                raise SampleError(f"{page}:{i + 1}: 'docs-test: {name}' needs an argument")
            pending.setdefault(name, []).append(arg)
            i += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            if line.strip() and pending:
                raise SampleError(f"{page}:{i + 1}: docs-test directives must sit right before a fenced block")
            i += 1
            continue
        marker, language, start = fence.group("fence"), fence.group("info").lower(), i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise SampleError(f"{page}:{start}: unclosed code block")
        i += 1
        if not language:
            raise SampleError(f"{page}:{start}: a code block without a language; name one ({', '.join(sorted(RUN_LANGUAGES | READ_ONLY_LANGUAGES))})")
        if language not in RUN_LANGUAGES | READ_ONLY_LANGUAGES:
            raise SampleError(f"{page}:{start}: code blocks in {language!r} cannot be checked; use one of {sorted(RUN_LANGUAGES | READ_ONLY_LANGUAGES)}")
        sample = Sample(page, start, language, "\n".join(body) + "\n")
        if "skip" in pending:
            sample.skip = pending["skip"][-1]
        if "file" in pending:
            if language != "python":
                raise SampleError(f"{page}:{start}: 'docs-test: file' applies to python blocks")
            sample.file = pending["file"][-1]
        sample.expect = pending.get("expect", [])
        if "timeout" in pending:
            sample.timeout = int(pending["timeout"][-1])
        if language in READ_ONLY_LANGUAGES and pending:
            raise SampleError(f"{page}:{start}: a {language} block is not run, so directives make no sense on it")
        pending = {}
        samples.append(sample)
    if pending:
        raise SampleError(f"{page}: docs-test directives at the end of the page, with no block after them")
    _check_files_are_run(page, samples)
    return samples


def _check_files_are_run(page: str, samples: list[Sample]) -> None:
    """A block written to a file is only tested if a later shell block runs that file."""
    for index, sample in enumerate(samples):
        if sample.file is None:
            continue
        later = [s for s in samples[index + 1 :] if s.language in ("bash", "console", "shell") and not s.skip]
        if not any(re.search(rf"(^|[\s/]){re.escape(sample.file)}(\s|$)", s.code) for s in later):
            raise SampleError(f"{page}:{sample.line}: the block written to {sample.file!r} is never run by a later shell block")


def pages() -> list[Path]:
    """The Markdown files whose samples are tested: every docs page, and the README."""
    return sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]


def collect() -> tuple[list[Sample], dict[str, str]]:
    """The samples that run (every block of the docs pages, the Python blocks of the README),
    and for each page that cannot be read, why (so one malformed page fails alone)."""
    out: list[Sample] = []
    errors: dict[str, str] = {}
    for path in pages():
        try:
            samples = parse(path)
        except SampleError as exc:
            errors[path.relative_to(ROOT).as_posix()] = str(exc)
            continue
        if path.name == "README.md":
            # The README's shell blocks install packages and launch a script of the reader's own
            # (`train.py`); the launching page runs the same commands on a real script.
            samples = [s for s in samples if s.language == "python"]
            for s in samples:
                s.code = README_PRELUDE + s.code
        out += [s for s in samples if s.language not in READ_ONLY_LANGUAGES]
    return out, errors
