"""Checkpoint files: atomic writes, torn temporary files, choosing the newest, pruning, metrics on resume."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from minigpt4.runners import checkpoint as ckpt_io


def _save(path, step):
    ckpt_io.atomic_save({"model": {"w": torch.full((2,), float(step))}, "global_step": step}, path)


def test_atomic_save_leaves_no_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint_0.pth"

    def broken_save(obj, handle):
        handle.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt_io.atomic_save({"global_step": 1}, target)
    assert list(tmp_path.iterdir()) == []


def test_atomic_save_replaces_an_existing_file_whole(tmp_path):
    target = tmp_path / "checkpoint_best.pth"
    _save(target, 1)
    _save(target, 2)
    assert ckpt_io.load_checkpoint_file(target)["global_step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_best.pth"]


def test_latest_checkpoint_is_by_global_step_and_ignores_partial_files(tmp_path):
    _save(tmp_path / ckpt_io.epoch_checkpoint_name(0), 4)
    _save(tmp_path / ckpt_io.step_checkpoint_name(6), 6)
    _save(tmp_path / ckpt_io.BEST_CHECKPOINT, 6)
    (tmp_path / ".checkpoint_abc.tmp").write_bytes(b"torn write of step 7")  # killed mid-save
    (tmp_path / "checkpoint_9.pth").write_bytes(b"not a checkpoint")  # e.g. a copy gone wrong
    assert ckpt_io.latest_checkpoint(tmp_path) == tmp_path / "checkpoint_step6.pth"
    assert [step for step, _ in ckpt_io.list_checkpoints(tmp_path)] == [4, 6]
    ckpt_io.remove_stale_tmp_files(tmp_path)
    assert not (tmp_path / ".checkpoint_abc.tmp").exists()
    assert ckpt_io.latest_checkpoint(tmp_path / "missing") is None


def test_prune_keeps_the_newest_and_best(tmp_path):
    for step in (2, 4, 6, 8):
        _save(tmp_path / ckpt_io.step_checkpoint_name(step), step)
    _save(tmp_path / ckpt_io.BEST_CHECKPOINT, 2)
    ckpt_io.prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_best.pth",
        "checkpoint_step6.pth",
        "checkpoint_step8.pth",
    ]


def test_metrics_log_continues_from_the_resumed_step(tmp_path):
    log = ckpt_io.MetricsLog(tmp_path / "metrics.jsonl")
    log.reset()
    for step in range(1, 6):
        log.append({"kind": "train", "step": step, "loss": float(step)})
    with open(log.path, "a") as handle:
        handle.write('{"kind": "train", "st')  # torn last line of a killed process
    log.truncate_after(3)
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    log.append({"kind": "train", "step": 4, "loss": 0.5})
    assert [r["step"] for r in log.read()] == [1, 2, 3, 4]


def test_rng_state_round_trip():
    state = ckpt_io.get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt_io.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
