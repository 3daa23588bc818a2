"""The metrics writer: metrics.jsonl kept consistent on resume."""

from __future__ import annotations

from minigpt4.runners.metrics import MetricsLog, MetricsWriter


def test_metrics_log_continues_from_the_resumed_step(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.reset()
    for step in range(1, 6):
        log.append({"kind": "train", "step": step, "loss": float(step)})
    with open(log.path, "a") as handle:
        handle.write('{"kind": "train", "st')  # torn last line of a killed process
    log.truncate_after(3)
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    log.append({"kind": "train", "step": 4, "loss": 0.5})
    assert [r["step"] for r in log.read()] == [1, 2, 3, 4]


def test_writer_state_cuts_the_files_back_to_the_checkpoint_step(tmp_path):
    writer = MetricsWriter(tmp_path, main_process=True, tensorboard=False, progress_bar=False, iters_per_epoch=4)
    writer.open(resumed=False)
    writer.start_training(0, 8, world_size=1)
    writer.start_epoch(0, 0)
    for step in range(1, 6):
        writer.iteration_done(step, samples=2)
        writer.log_train(step, 0, step - 1, loss=1.0 / step, lr=0.1, nonfinite=0, bad={})
        if step == 3:
            state = writer.state_dict()  # what a checkpoint at step 3 holds
    writer.close()
    assert state == {"step": 3}
    resumed = MetricsWriter(tmp_path, main_process=True, tensorboard=False, progress_bar=False, iters_per_epoch=4)
    resumed.load_state_dict(state)
    resumed.open(resumed=True)
    assert [r["step"] for r in MetricsLog(tmp_path / "metrics.jsonl").read()] == [1, 2, 3]


def test_other_ranks_write_no_files(tmp_path):
    writer = MetricsWriter(tmp_path, main_process=False, tensorboard=True, progress_bar=False, iters_per_epoch=4)
    writer.open(resumed=False)
    writer.write({"kind": "val", "step": 1, "loss": 0.5})
    writer.close()
    assert list(tmp_path.iterdir()) == []
