"""Shared checks for the multi-process DDP tests."""

import json
import socket
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_results(folder, world_size):
    files = sorted(Path(folder).glob("rank*.json"))
    assert len(files) == world_size, f"expected {world_size} rank files, found {[f.name for f in files]}"
    return [json.loads(f.read_text()) for f in sorted(files, key=lambda f: int(f.stem[4:]))]


def check_data_parallel(results, dataset_size=64):
    """Each rank saw its own share of every epoch, epochs were reshuffled, replicas ended equal."""
    world = len(results)
    assert [r["rank"] for r in results] == list(range(world))
    assert all(r["world_size"] == world for r in results)
    epochs = len(results[0]["seen"])
    for epoch in range(epochs):
        shares = [set(r["seen"][epoch]) for r in results]
        for a in range(world):
            for b in range(a + 1, world):
                assert not shares[a] & shares[b], f"ranks {a} and {b} saw the same samples in epoch {epoch}"
        assert set().union(*shares) == set(range(dataset_size))
    if epochs > 1:
        assert results[0]["seen"][0] != results[0]["seen"][1], "the sampler's epoch did not advance"
    assert len({r["params"] for r in results}) == 1, "replicas diverged"
    assert len({r["mean_last_loss"] for r in results}) == 1
