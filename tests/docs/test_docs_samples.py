"""Run every code sample of the docs and the README, so the docs cannot drift from the code.

How blocks are found and what the ``<!-- docs-test: ... -->`` directives mean: see
``tests/docs/docs_samples.py``. Skipped blocks are reported with their reason
(``pytest -rs``); there are deliberately few.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from docs_samples import Sample, collect

SAMPLES = collect()
# At most this many blocks may be skipped: a skip must stay the exception (GPU, cluster, installs).
MAX_SKIPPED = 8


def _env(folder: Path) -> dict[str, str]:
    """A clean environment: no launcher variables inherited from the test process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WEFT_CLI_", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_", "TORCHELASTIC"))
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["HOME"] = env.get("HOME", str(folder))
    return env


@pytest.fixture(scope="module")
def page_folders(tmp_path_factory):
    """One scratch folder per page, shared by its blocks (they run in order)."""
    folders: dict[str, Path] = {}

    def get(page: str) -> Path:
        if page not in folders:
            folders[page] = tmp_path_factory.mktemp(page.replace("/", "_").replace(".md", ""))
        return folders[page]

    return get


def _run(sample: Sample, folder: Path) -> subprocess.CompletedProcess:
    if sample.language == "python":
        script = folder / f"sample_line{sample.line}.py"
        script.write_text(sample.code, encoding="utf-8")
        command = [sys.executable, script.name]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", sample.code]
    try:
        return subprocess.run(command, cwd=folder, env=_env(folder), capture_output=True, text=True, timeout=sample.timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{sample.id}: timed out after {sample.timeout}s\n--- code\n{sample.code}\n--- stdout\n{exc.stdout}\n--- stderr\n{exc.stderr}")


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample_runs(sample: Sample, page_folders) -> None:
    if sample.skip:
        pytest.skip(f"docs-test skip: {sample.skip}")
    folder = page_folders(sample.page)
    if sample.language == "toml":
        tomllib = pytest.importorskip("tomllib", reason="TOML samples are parsed with tomllib (Python 3.11+)")
        tomllib.loads(sample.code)
        return
    if sample.file:
        (folder / sample.file).write_text(sample.code, encoding="utf-8")
        return  # run by a later shell block of the page (docs_samples.py checks there is one)
    proc = _run(sample, folder)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(f"{sample.id}: exit {proc.returncode}\n--- code\n{sample.code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    for text in sample.expect:
        assert text in output, f"{sample.id}: expected {text!r} in the output\n--- output\n{output}"


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
