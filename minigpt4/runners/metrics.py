"""The metrics writer: log lines, ``metrics.jsonl``, TensorBoard scalars, the progress bar, throughput and ETA.

Rank 0 writes ``metrics.jsonl`` and TensorBoard; every rank logs. The writer's state is the step its files are
valid up to: loading it on resume cuts ``metrics.jsonl`` back to that step (and TensorBoard purges later
events), so the files of a run killed at any moment and resumed read as if it had never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from minigpt4.common.logger import progress
from minigpt4.runners.checkpointer import atomic_write_text

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
_NOT_SCALARS = ("step", "epoch", "iter")


class MetricsLog:
    """Append-only JSON lines; on resume, records after the resumed step are dropped so the log continues
    exactly where the checkpoint left off (as if the run had never been interrupted)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def truncate_after(self, global_step: int) -> None:
        """Keep the records with ``step <= global_step`` (and drop a torn last line)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if int(record.get("step", 0)) <= global_step:
                kept.append(line)
        atomic_write_text("".join(f"{line}\n" for line in kept), self.path)

    def reset(self) -> None:
        self.path.write_text("", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Throughput:
    """Samples/s and ETA of the iterations run by this process (all ranks assumed alike)."""

    def __init__(self, start_step: int, total_steps: int, world_size: int) -> None:
        self.start = self.window_start = time.perf_counter()
        self.start_step, self.total_steps, self.world_size = start_step, total_steps, world_size
        self.samples = self.window_samples = 0

    def add_samples(self, count: int) -> None:
        self.samples += count
        self.window_samples += count

    def tick(self, step: int) -> tuple[float, float]:
        """(samples/s over all ranks since the last tick, seconds left)."""
        now_ = time.perf_counter()
        speed = self.window_samples * self.world_size / max(now_ - self.window_start, 1e-9)
        self.window_start, self.window_samples = now_, 0
        done = step - self.start_step
        eta = (now_ - self.start) / done * (self.total_steps - step) if done else float("nan")
        return speed, eta

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class MetricsWriter:
    """Where the run's numbers go: the log, ``metrics.jsonl`` and TensorBoard (rank 0), and the progress bar.

    Args:
        run_dir: the run folder.
        main_process: whether this rank writes the files (rank 0).
        tensorboard: write TensorBoard scalars under ``run_dir/tensorboard`` (``run.tensorboard``).
        progress_bar: show a tqdm bar on an interactive terminal (``run.progress_bar``).
        iters_per_epoch: for the log lines and the bar.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        main_process: bool,
        tensorboard: bool,
        progress_bar: bool,
        iters_per_epoch: int,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.main_process, self.tensorboard, self.progress_bar = main_process, tensorboard, progress_bar
        self.iters_per_epoch = iters_per_epoch
        self.log: MetricsLog | None = None
        self.tb_writer: Any = None
        self.bar: Any = None
        self.clock: Throughput | None = None
        self.step = 0  # the training step reached: the files hold the records up to it

    # -- state --------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the files of a run resumed at ``state["step"]`` (call before :meth:`open`)."""
        self.step = int(state["step"])

    def open(self, resumed: bool) -> None:
        """Start the files: a fresh run empties them, a resumed one cuts them back to :attr:`step`."""
        if not self.main_process:
            return
        self.log = MetricsLog(self.run_dir / METRICS_FILE)
        if resumed:
            self.log.truncate_after(self.step)
        else:
            self.log.reset()
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after the resumed step (all of them on a fresh start)
            self.tb_writer = SummaryWriter(
                log_dir=str(self.run_dir / TENSORBOARD_DIR), purge_step=self.step + 1 if resumed else 0
            )

    def close(self) -> None:
        self.end_epoch()
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None

    # -- progress -------------------------------------------------------------------------------------------------
    def start_training(self, start_step: int, total_steps: int, world_size: int) -> None:
        self.clock = Throughput(start_step, total_steps, world_size)

    def start_epoch(self, epoch: int, start_iter: int) -> None:
        self.bar = progress(
            total=self.iters_per_epoch, desc=f"epoch {epoch}", disable=None if self.progress_bar else True
        )
        if start_iter:
            self.bar.update(start_iter)

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def iteration_done(self, step: int, samples: int) -> None:
        """Training reached ``step`` with an iteration of ``samples`` samples (on this rank)."""
        self.step = step
        self.clock.add_samples(samples)
        self.bar.update(1)

    # -- records --------------------------------------------------------------------------------------------------
    def log_train(
        self, step: int, epoch: int, i: int, loss: float, lr: float, nonfinite: int, bad: dict[str, int]
    ) -> None:
        """One training log line and record (iteration ``i`` of ``epoch``, 0-based)."""
        speed, eta = self.clock.tick(step)
        logger.info(
            "epoch %d [%d/%d] step %d  loss %.4f  lr %.3e  %.1f samples/s  eta %s  skipped: %d non-finite, bad samples %s",
            epoch,
            i + 1,
            self.iters_per_epoch,
            step,
            loss,
            lr,
            speed,
            format_seconds(eta),
            nonfinite,
            bad or "none",
        )
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        self.write(
            {
                "kind": "train",
                "step": step,
                "epoch": epoch,
                "iter": i + 1,
                "loss": loss,
                "lr": lr,
                "samples_per_sec": speed,
                "eta_s": eta if math.isfinite(eta) else None,
                "nonfinite_skipped": nonfinite,
                "bad_samples": bad,
            }
        )

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with ``kind`` and ``step``) to metrics.jsonl and its numbers to TensorBoard."""
        if self.log is not None:
            self.log.append(record)
        if self.tb_writer is not None:
            prefix = "val" if record["kind"] == "val" else "train"
            for key, value in record.items():
                if isinstance(value, int | float) and key not in _NOT_SCALARS:
                    self.tb_writer.add_scalar(f"{prefix}/{key}", value, record["step"])
            for reason, count in (record.get("bad_samples") or {}).items():
                self.tb_writer.add_scalar(f"train/bad_samples/{reason}", count, record["step"])
            self.tb_writer.flush()


def format_seconds(seconds: float) -> str:
    """``H:MM:SS``, or ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
