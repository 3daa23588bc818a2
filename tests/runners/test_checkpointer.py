"""Checkpoint files: atomic writes, torn temporary files, choosing the newest, pruning; the best checkpoint."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from minigpt4.runners import checkpointer as ckpt_io


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


def test_rng_state_round_trip():
    state = ckpt_io.get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt_io.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_best_by_metric_and_mode(tmp_path):
    lowest = ckpt_io.Checkpointer(tmp_path, keep_last=None)
    assert [lowest.improves({"loss": v}) for v in (3.0, 2.0, 2.5, float("nan"), 1.0)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    highest = ckpt_io.Checkpointer(tmp_path, keep_last=None, best_metric="a/val/accuracy", best_mode="max")
    assert [highest.improves({"loss": 0.0, "a/val/accuracy": v}) for v in (0.5, 0.4, 0.7)] == [True, False, True]
    assert highest.state_dict() == {"best_metric": "a/val/accuracy", "best_mode": "max", "best_value": 0.7}
    with pytest.raises(KeyError, match="run.best_metric='a/val/accuracy'.*'loss'"):
        highest.improves({"loss": 1.0})
    with pytest.raises(ValueError, match="run.best_mode"):
        ckpt_io.Checkpointer(tmp_path, keep_last=None, best_mode="lowest")


def test_best_state_round_trip_and_a_changed_metric_starts_afresh(tmp_path, caplog):
    first = ckpt_io.Checkpointer(tmp_path, keep_last=None)
    first.improves({"loss": 2.0})
    again = ckpt_io.Checkpointer(tmp_path, keep_last=None)
    again.load_state_dict(first.state_dict())
    assert not again.improves({"loss": 2.5}) and again.improves({"loss": 1.5})
    other = ckpt_io.Checkpointer(tmp_path, keep_last=None, best_mode="max")
    other.load_state_dict(first.state_dict())
    assert other.best_value is None and "starts afresh" in caplog.text


def test_resume_discovery(tmp_path):
    checkpointer = ckpt_io.Checkpointer(tmp_path / "run", keep_last=None)
    assert checkpointer.find_resume(auto_resume=True, resume_ckpt_path=None) is None
    explicit = tmp_path / "elsewhere.pth"
    _save(explicit, 3)
    assert checkpointer.find_resume(auto_resume=True, resume_ckpt_path=str(explicit)) == explicit
    checkpointer.prepare(resuming=False, config_yaml="run: {}\n")
    _save(tmp_path / "run" / ckpt_io.step_checkpoint_name(5), 5)
    assert checkpointer.find_resume(auto_resume=True, resume_ckpt_path=str(explicit)).name == "checkpoint_step5.pth"
    assert checkpointer.find_resume(auto_resume=False, resume_ckpt_path=str(explicit)) == explicit
    with pytest.raises(FileNotFoundError, match="run.resume_ckpt_path"):
        checkpointer.find_resume(auto_resume=False, resume_ckpt_path=str(tmp_path / "missing.pth"))
    with pytest.raises(FileExistsError, match="auto_resume"):
        checkpointer.prepare(resuming=False, config_yaml="")
