"""Run every code sample of the docs and the README, so the docs cannot drift from the code.

How blocks are found and what the ``<!-- docs-test: ... -->`` directives mean: see
``tests/docs/docs_samples.py``. Skipped blocks are reported with their reason
(``pytest -rs``); there are deliberately few.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from docs_samples import ROOT, Sample, collect, pages

SAMPLES, PAGE_ERRORS = collect()
PAGES = [p.relative_to(ROOT).as_posix() for p in pages()]
# At most this many blocks may be skipped: a skip must stay the exception (GPU, cluster, installs).
MAX_SKIPPED = 8


#: Pages run side by side (blocks of one page stay in order): most of a sample's time is
#: spent starting interpreters and processes, which overlaps well.
WORKERS = max(2, min(4, os.cpu_count() or 2))


def _env(folder: Path) -> dict[str, str]:
    """A clean environment: no launcher variables inherited from the test process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WEFT_CLI_", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_", "TORCHELASTIC", "SLURM_"))
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # several samples share few cores
    return env


@dataclass
class Outcome:
    """How one block ran."""

    returncode: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float


def _run(sample: Sample, folder: Path) -> Outcome:
    if sample.file:
        (folder / sample.file).write_text(sample.code, encoding="utf-8")
        return Outcome(0, "", "", 0.0)  # run by a later shell block (docs_samples.py checks there is one)
    if sample.language == "python":
        script = folder / f"sample_line{sample.line}.py"
        script.write_text(sample.code, encoding="utf-8")
        command = [sys.executable, script.name]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", sample.code]
    began = time.monotonic()
    # Its own process group, so a sample that times out is stopped with every process it started.
    proc = subprocess.Popen(
        command, cwd=folder, env=_env(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=sample.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return Outcome(None, stdout, stderr, time.monotonic() - began)
    return Outcome(proc.returncode, stdout, stderr, time.monotonic() - began)


class PageRunner:
    """Runs the selected pages' blocks in the background, one thread per page, in page order."""

    def __init__(self, samples: list[Sample], folder_for: Callable[[str], Path]) -> None:
        self._futures = {s.id: Future() for s in samples}
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="docs-page")
        by_page: dict[str, list[Sample]] = {}
        for sample in samples:
            by_page.setdefault(sample.page, []).append(sample)
        for page, blocks in by_page.items():
            self._pool.submit(self._run_page, blocks, folder_for(page))

    def _run_page(self, blocks: list[Sample], folder: Path) -> None:
        for sample in blocks:
            future = self._futures[sample.id]
            if sample.skip or sample.language == "toml":
                future.set_result(None)
                continue
            try:
                future.set_result(_run(sample, folder))
            except BaseException as exc:  # noqa: BLE001 - reported by the block's test
                future.set_exception(exc)

    def outcome(self, sample: Sample) -> Outcome | None:
        return self._futures[sample.id].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def runner(request, tmp_path_factory):
    """Start every selected page at once; each test then waits for its own block."""
    selected = {
        item.callspec.params["sample"].id
        for item in request.session.items
        if item.originalname == "test_sample_runs" and hasattr(item, "callspec")
    }
    # A page runs from its first block to its last selected one (earlier blocks may prepare files).
    chosen: list[Sample] = []
    for page in dict.fromkeys(s.page for s in SAMPLES):
        blocks = [s for s in SAMPLES if s.page == page]
        last = max((i for i, s in enumerate(blocks) if s.id in selected), default=-1)
        chosen += blocks[: last + 1]
    folders = {page: tmp_path_factory.mktemp(page.replace("/", "_").replace(".md", "")) for page in {s.page for s in chosen}}
    page_runner = PageRunner(chosen, folders.__getitem__)
    yield page_runner
    page_runner.close()


@pytest.mark.timeout(900)  # waits for its page's earlier blocks too; each block has its own timeout
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample_runs(sample: Sample, runner: PageRunner) -> None:
    if sample.skip:
        pytest.skip(f"docs-test skip: {sample.skip}")
    if sample.language == "toml":
        tomllib = pytest.importorskip("tomllib", reason="TOML samples are parsed with tomllib (Python 3.11+)")
        tomllib.loads(sample.code)
        return
    result = runner.outcome(sample)
    shown = f"--- code\n{sample.code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    if result.returncode is None:
        pytest.fail(f"{sample.id}: timed out after {sample.timeout}s\n{shown}")
    if result.returncode != 0:
        pytest.fail(f"{sample.id}: exit {result.returncode} after {result.seconds:.1f}s\n{shown}")
    output = result.stdout + result.stderr
    for text in sample.expect:
        assert text in output, f"{sample.id}: expected {text!r} in the output\n{shown}"


@pytest.mark.parametrize("page", PAGES)
def test_page_blocks_are_checkable(page: str) -> None:
    """Every block names a language the runner knows, and every directive is well formed."""
    if page in PAGE_ERRORS:
        pytest.fail(PAGE_ERRORS[page])


def test_skips_are_few_and_explained() -> None:
    skipped = [s for s in SAMPLES if s.skip]
    listing = "\n".join(f"  {s.id}: {s.skip}" for s in skipped)
    print(f"\n{len(skipped)} of {len(SAMPLES)} docs samples are skipped:\n{listing}")
    assert len(skipped) <= MAX_SKIPPED, f"too many skipped docs samples ({len(skipped)}):\n{listing}"
    assert all(len(s.skip.split()) >= 2 for s in skipped), f"every skip needs a reason:\n{listing}"


def test_every_page_has_samples_checked() -> None:
    """The pages that teach the API carry runnable samples (a page of prose alone can still drift)."""
    with_code = {s.page for s in SAMPLES if not s.skip}
    for page in ("getting-started.md", "migrating.md", "launching.md", "checkpoints.md", "strategies.md", "plugins.md"):
        assert f"docs/{page}" in with_code, f"docs/{page} has no sample that runs"
    assert "README.md" in with_code
