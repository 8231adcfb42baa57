"""Checkpoint integrity: checksums verified on load, damaged sharded folders, concurrent sharded
saves, a full disk, and state that could never be restored refused at save time.

Every check has a control that restores the old behaviour and shows the check catches it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import weft.checkpoint as wcp
from conftest import run_python
from weft import Fabric, registry
from weft.consolidate import read_sharded
from weft.errors import CheckpointError
from weft.sharded_integrity import MANIFEST, verify_folder

SHARDED = Path(__file__).parent / "scripts" / "ckpt_sharded.py"
SPEED = Path(__file__).parent / "scripts" / "ckpt_speed.py"
needs_fsdp = pytest.mark.skipif("fsdp" not in registry.names("strategies"), reason="weft-fsdp is not installed")


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return type(a) is type(b) and a == b


def _flip_every_byte(path: Path, original: dict) -> dict:
    """Flip one bit of each byte in turn and load: count errors, harmless flips, silent wrong loads."""
    raw = path.read_bytes()
    damaged = path.with_name("damaged.pt")
    counts = {"error": 0, "same": 0, "silent": 0, "other": 0, "messages": set()}
    for i in range(len(raw)):
        data = bytearray(raw)
        data[i] ^= 0x10
        damaged.write_bytes(data)
        try:
            loaded = wcp.load_file(damaged)
        except CheckpointError as exc:
            assert "damaged.pt" in str(exc)  # every error names the file
            counts["error"] += 1
            counts["messages"].add(str(exc))
            continue
        except Exception:  # noqa: BLE001
            counts["other"] += 1
            continue
        counts["same" if _same(original, loaded) else "silent"] += 1
    return counts


SMALL = {"model": {"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.ones(2)},
         "history": [torch.zeros(2), torch.full((2,), 3.0)], "step": 5}


def test_every_flipped_byte_of_a_single_file_checkpoint_is_an_error_naming_file_and_entry(tmp_path):
    path = tmp_path / "c.pt"
    wcp.atomic_torch_save(SMALL, path)
    counts = _flip_every_byte(path, SMALL)
    assert counts["silent"] == 0 and counts["other"] == 0, counts
    assert counts["error"] > 500  # the flips that matter: tensor data, data.pkl, zip structure
    text = "\n".join(counts["messages"])
    for entry in ("model/layer.weight", "model/layer.bias", "history/0", "history/1"):
        assert f"entry {entry} " in text, entry
    assert "record 'data.pkl'" in text


def test_control_without_verification_torch_loads_flipped_tensor_data_silently(tmp_path, monkeypatch):
    monkeypatch.setattr(wcp, "verify_torch_file", lambda path: None)  # the old load_file
    path = tmp_path / "c.pt"
    wcp.atomic_torch_save(SMALL, path)
    assert _flip_every_byte(path, SMALL)["silent"] > 0


def test_fabric_load_names_the_damaged_entry_and_unverified_files_still_load(tmp_path):
    fabric = Fabric(accelerator="cpu", devices=1)
    model = fabric.setup(nn.Linear(64, 64))
    fabric.save(tmp_path / "c.ckpt", {"model": model, "step": 1})
    raw = bytearray((tmp_path / "c.ckpt").read_bytes())
    weight = model.weight.detach().numpy().tobytes()
    raw[raw.find(weight) + 100] ^= 0x01  # one bit of the weight's data
    (tmp_path / "c.ckpt").write_bytes(raw)
    with pytest.raises(CheckpointError, match=r"c\.ckpt.*entry model/weight ") as info:
        fabric.load(tmp_path / "c.ckpt", {"model": model})
    assert "older checkpoint" in str(info.value)
    torch.serialization.set_crc32_options(False)  # a file without checksums: loads, unverified
    try:
        torch.save({"model": model.state_dict()}, tmp_path / "nocrc.ckpt")
    finally:
        torch.serialization.set_crc32_options(True)
    fabric.load(tmp_path / "nocrc.ckpt", {"model": model})


# ---------------------------------------------------------------------- sharded folders (2 FSDP ranks)


def _run_job(mode: str, folder: Path, *extra, env=None, timeout=240):
    out = folder / f"{mode}-report"
    run_python([SHARDED, mode, folder, out, *extra], timeout=timeout, env=env)
    return [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(int((env or {}).get("CKPT_DEVICES", 2)))]


@pytest.fixture(scope="module")
def damaged_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt-damage")
    return folder, _run_job("damage", folder)


@needs_fsdp
@pytest.mark.timeout(300)
def test_damaged_sharded_folder_is_a_checkpoint_error_on_every_rank_whatever_strict(damaged_runs):
    _, reports = damaged_runs
    for report in reports:
        assert report["repaired_loads"]
        results = report["results"]
        assert len(results) == 12  # 6 kinds of damage, strict and not
        for name, outcome in results.items():
            # Raised (not loaded silently), a weft error that `except Exception` catches too.
            assert outcome["type"].startswith("Checkpoint") and outcome["weft"] and outcome["exception"], (name, outcome)
            assert "sharded" in outcome["message"] or "weft_meta.pt" in outcome["message"]
        for name, outcome in results.items():
            if name.startswith("flip __"):
                shard = name.split()[1]
                assert f"entry 'model.0.weight' in file '{shard}'" in outcome["message"]
            if name.startswith("delete"):
                assert f"its file '{name.split()[1]}' is missing" in outcome["message"]
        assert "'.metadata' does not match its checksum" in results["flip .metadata strict=True"]["message"]


@needs_fsdp
@pytest.mark.timeout(300)
def test_control_without_verification_dcp_loads_flipped_shards_silently(tmp_path):
    reports = _run_job("damage", tmp_path, env={"WEFT_TEST_BREAK": "no_verify"})
    silent = [n for n, o in reports[0]["results"].items() if o.get("silent")]
    assert any(n.startswith("flip __0_0") for n in silent) and any(n.startswith("flip __1_0") for n in silent)


@needs_fsdp
def test_consolidate_verifies_and_folders_without_manifest_still_load(damaged_runs, tmp_path, capsys, monkeypatch):
    from weft.cli import main

    source, _ = damaged_runs
    good = tmp_path / "good"
    shutil.copytree(source / "sharded", good)
    assert verify_folder(str(good))
    manifest = json.loads((good / MANIFEST).read_text())
    item = max(manifest["items"], key=lambda i: i["length"])
    with open(good / item["file"], "r+b") as f:  # flip one byte in the middle of the item
        f.seek(item["offset"] + item["length"] // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(CheckpointError, match=f"entry '{item['fqn']}' in file '{item['file']}'"):
        read_sharded(good)
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        verify_folder(str(good))
    assert main(["consolidate", str(good), str(tmp_path / "out.pt")]) == 2
    assert "does not match its checksum" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()

    foreign = tmp_path / "foreign"  # an older or foreign folder: no manifest, loads unverified
    shutil.copytree(source / "sharded", foreign)
    (foreign / MANIFEST).unlink()
    assert verify_folder(str(foreign)) is False
    assert read_sharded(foreign)["step"] == 1
    (foreign / "__1_0.distcp").unlink()  # ... but a missing shard is still named
    with pytest.raises(CheckpointError, match="its file '__1_0.distcp' is missing"):
        read_sharded(foreign)
    shutil.copy(source / "sharded" / "__1_0.distcp", foreign)
    with open(foreign / "__1_0.distcp", "r+b") as f:
        f.truncate(10)  # truncated: DCP's own failure (a BaseException) must become a CheckpointError
    try:
        read_sharded(foreign)
    except Exception as exc:  # noqa: BLE001 - `except Exception` must catch it
        assert isinstance(exc, CheckpointError) and "foreign" in str(exc)
    else:
        pytest.fail("a truncated shard loaded")

    # Control: without the conversion, DCP's CheckpointException escapes `except Exception`.
    import weft.sharded_integrity as integrity

    monkeypatch.setattr(integrity, "is_dcp_failure", lambda exc: False)
    with pytest.raises(BaseException) as info:
        try:
            read_sharded(foreign)
        except Exception:  # noqa: BLE001
            pytest.fail("caught")
    assert type(info.value).__name__ == "CheckpointException"


def _concurrent(folder: Path, break_: str = "") -> tuple[list, list, Path]:
    """A 2-rank and a 1-rank FSDP job saving the same folder 6 times each, started together."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))}
    env.update(CKPT_WAIT_FOR="1,2", WEFT_TEST_BREAK=break_, PYTHONUNBUFFERED="1")
    jobs = [
        subprocess.Popen([sys.executable, str(SHARDED), "concurrent", str(folder), str(folder / "a"), "1", "6"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([sys.executable, str(SHARDED), "concurrent", str(folder), str(folder / "b"), "2", "6"],
                         env={**env, "CKPT_DEVICES": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    ]
    for job in jobs:
        try:
            output, _ = job.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for j in jobs:
                j.kill()
            pytest.fail("concurrent saves did not finish in 240 s")
        assert job.returncode == 0, output[-3000:]
    errors = [json.loads((folder / f"a.{r}").read_text())["errors"] for r in (0, 1)]
    errors.append(json.loads((folder / "b.0").read_text())["errors"])
    return errors, sorted(os.listdir(folder)), folder / "shared"


@needs_fsdp
@pytest.mark.timeout(300)
def test_concurrent_sharded_saves_to_one_folder_leave_one_whole_checkpoint(tmp_path):
    errors, names, shared = _concurrent(tmp_path)
    assert errors == [[], [], []]
    assert not [n for n in names if n.startswith(".")], names  # no scratch folder left behind
    assert {"ready-1", "ready-2", "shared"} <= set(names)
    assert verify_folder(str(shared))
    state = read_sharded(shared)
    marks = {float(v.unique()) for v in state["model"].values()}
    assert len(marks) == 1 and marks == {float(state["step"])}  # every tensor from the same save
    assert state["step"] in (1005, 2005)  # the last save of one of the two jobs


@needs_fsdp
@pytest.mark.timeout(300)
def test_control_a_shared_scratch_folder_breaks_concurrent_saves(tmp_path):
    errors, _, _ = _concurrent(tmp_path, "shared_scratch")
    assert any(errors), "saves through one shared scratch folder did not collide"


# ---------------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), so writes fail with ENOSPC."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root in a container that allows mount): {proc.stderr.strip()}")
    try:
        yield disk
    finally:
        import gc

        gc.collect()  # drop the test's last references to files on the disk
        proc = subprocess.run(["umount", str(disk)], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:  # still busy: detach now, the kernel frees it once unused
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def _full_disk_save(disk: Path) -> tuple[BaseException | None, list, list, bool]:
    fabric = Fabric(accelerator="cpu", devices=1)
    small = fabric.setup(nn.Linear(16, 16))
    fabric.save(disk / "last.ckpt", {"model": small, "step": 1})
    before = sorted(os.listdir(disk))
    error = None
    try:
        fabric.save(disk / "last.ckpt", {"model": nn.Linear(1024, 512), "step": 2})  # 2 MB
    except Exception as exc:  # noqa: BLE001
        error = exc
    after = sorted(os.listdir(disk))
    fresh = nn.Linear(16, 16)
    rest = fabric.load(disk / "last.ckpt", {"model": fresh})
    intact = torch.equal(fresh.weight, small.weight) and rest == {"step": 1}
    return error, before, after, intact


def test_full_disk_single_file_save_says_so_and_keeps_the_previous_checkpoint(small_disk):
    error, before, after, intact = _full_disk_save(small_disk)
    assert isinstance(error, CheckpointError), repr(error)
    assert "disk is full" in str(error) and "last.ckpt" in str(error) and "bytes" in str(error)
    assert before == after == ["last.ckpt"]  # no temporary file left
    assert intact


def test_control_without_the_disk_full_check_torch_reports_only_a_position_error(small_disk, monkeypatch):
    monkeypatch.setattr(wcp, "disk_full_error", lambda *args: None)
    error, *_ = _full_disk_save(small_disk)
    assert not isinstance(error, CheckpointError) and "disk is full" not in str(error)


@needs_fsdp
@pytest.mark.timeout(300)
def test_full_disk_sharded_save_says_so_on_every_rank_and_keeps_the_previous_checkpoint(small_disk):
    for report in _run_job("diskfull", small_disk):
        assert report["outcome"]["weft"], report
        assert "disk is full" in report["outcome"]["message"] and "ckpt" in report["outcome"]["message"]
        assert report["before"] == report["after"]  # no scratch folder left, the old folder whole
        assert report["previous_loads"]


# ---------------------------------------------------------------------- state that could never be restored


class Settings:
    def __init__(self) -> None:
        self.lr = 0.1


def _bad_states():
    ema = nn.Linear(2, 2)
    return [
        ({"extras": {"ema": ema}}, r"state\['extras'\]\['ema'\].*top level"),
        ({"opts": [torch.optim.SGD(ema.parameters(), lr=0.1)]}, r"state\['opts'\]\[0\].*top level"),
        ({"model": nn.Linear(2, 2, device="meta")}, r"state\['model'\].*meta device.*to_empty"),
        ({"buf": {"t": torch.empty(3, device="meta")}}, r"state\['buf'\]\['t'\].*meta device.*[Mm]aterialise"),
        ({"hooks": {"fn": lambda x: x}}, r"state\['hooks'\]\['fn'\].*function"),
        ({"settings": Settings()}, r"state\['settings'\].*Settings.*plain types.*add_safe_globals"),
        ({"gen": (i for i in range(3))}, r"state\['gen'\].*generator"),
        ({"ids": {1: {Settings()}}}, r"state\['ids'\]\[1\].*Settings"),
    ]


@pytest.mark.parametrize("index", range(8))
def test_state_that_cannot_be_restored_is_refused_at_save_naming_the_key(tmp_path, index):
    state, message = _bad_states()[index]
    fabric = Fabric(accelerator="cpu", devices=1)
    with pytest.raises(CheckpointError, match=message):
        fabric.save(tmp_path / "c.ckpt", state)
    assert not os.listdir(tmp_path)  # refused before anything was written


def test_everything_the_default_load_restores_still_saves(tmp_path):
    import collections

    fabric = Fabric(accelerator="cpu", devices=1)
    model = nn.Linear(2, 2)
    model, optimizer = fabric.setup(model, torch.optim.Adam(model.parameters()))
    state = {
        "model": model, "optimizer": optimizer, "step": 3, "lr": 0.1, "name": "run", "flags": (True, None),
        "ordered": collections.OrderedDict(a=1), "sizes": torch.Size([2, 3]), "dtype": torch.bfloat16,
        "device": torch.device("cpu"), "blob": b"\x00\x01", "nested": {"t": [torch.ones(2), {"x": 1.5}], 2: "two"},
        "param": nn.Parameter(torch.ones(2)), "complex": 1 + 2j, "counter": collections.Counter(a=2),
        "tags": {"a", "b"},
    }
    fabric.save(tmp_path / "c.ckpt", state)
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)
    assert loaded["nested"][2] == "two" and loaded["tags"] == {"a", "b"}
    with torch.serialization.safe_globals([Settings]):  # a class the user allowed: saves and loads
        fabric.save(tmp_path / "s.ckpt", {"settings": Settings()})
        assert fabric.load(tmp_path / "s.ckpt")["settings"].lr == 0.1


def test_control_without_the_check_the_failure_comes_only_at_load(tmp_path, monkeypatch):
    import weft.fabric

    monkeypatch.setattr(weft.fabric, "check_restorable", lambda state: None)
    fabric = Fabric(accelerator="cpu", devices=1)
    fabric.save(tmp_path / "c.ckpt", {"extras": {"settings": Settings()}})  # saves without complaint
    with pytest.raises(CheckpointError, match="weights_only=False"):
        fabric.load(tmp_path / "c.ckpt")


# ---------------------------------------------------------------------- cost


@pytest.mark.timeout(200)
def test_checksums_cost_nothing_at_single_file_save_and_little_at_load():
    proc = run_python([SPEED, "--mb", "40", "--repeat", "3"], timeout=180)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["verify_gb_per_s"] > 0.3, figures  # zlib's CRC-32: GB/s even on a busy machine
    assert figures["load_ratio"] < 2.0, figures
    assert figures["check_restorable_us"] < 5000, figures
