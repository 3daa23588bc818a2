"""The training step synchronises host and device once: reading the finite/stop flags (the loss rides along at
log steps). Counted on the CPU during a real train.py run of the tiny MiniGPT-4 by a torch-function mode that
follows which tensors would live on the GPU (parameters, batches as the data iterator hands them over, everything
computed from them or created on a ``torch.device`` object, such as ``device=loss.device``; ``device="cpu"`` marks
host tensors, such as the optimizer's step counters) and records every ``item``, ``cpu``, ``tolist``, ``numpy``, ``float()``,
``int()`` and ``bool()`` on them between two log steps."""

from __future__ import annotations

import traceback
import weakref
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import train
from minigpt4.datasets.data_utils import TrainIterator
from minigpt4.runners.metrics import MetricsWriter
from minigpt4.runners.runner_base import RunnerBase
from tests.runners import helpers as h

SYNCS = {
    torch.Tensor.item: "item",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.__float__: "float",
    torch.Tensor.__int__: "int",
    torch.Tensor.__bool__: "bool",
}
REPO = str(h.REPO_ROOT)


def _caller() -> str:
    """The first frame outside torch and this file: ``minigpt4/runners/runner_base.py``, ``transformers/...``."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        name = frame.filename
        if "/torch/" in name or name == __file__:
            continue
        return name.removeprefix(REPO + "/").split("site-packages/")[-1] + f":{frame.lineno}"
    return "?"


class DeviceSyncCounter(TorchFunctionMode):
    """Records synchronising calls on tensors that would be on the accelerator in a GPU run."""

    def __init__(self) -> None:
        super().__init__()
        self.on_device: set[int] = set()  # ids of live tensors (dropped when a tensor is freed)
        self.step = 0
        self.paused = False  # while the data iterator runs: its work is on the host, in loader workers
        self.calls: list[tuple[int, str, str, int]] = []  # (steps done, call, caller, values read)

    def mark(self, tensors) -> None:
        for t in tree_flatten(tensors)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in self.on_device:
                self.on_device.add(id(t))
                weakref.finalize(t, self.on_device.discard, id(t))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.paused:
            return func(*args, **kwargs)
        inputs = tree_flatten((args, kwargs))[0]
        device_input = any(isinstance(t, torch.Tensor) and id(t) in self.on_device for t in inputs)
        if func in SYNCS and device_input:
            self.calls.append((self.step, SYNCS[func], _caller(), args[0].numel()))
        out = func(*args, **kwargs)
        explicit_device = any(isinstance(a, torch.device) for a in inputs)
        if device_input or explicit_device:
            self.mark(out)
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return h.build_world(tmp_path_factory.mktemp("sync_world"))


def _count(world, tmp_path: Path, monkeypatch, **run) -> DeviceSyncCounter:
    run = h.run_section(tmp_path / "out", max_epoch=1, iters_per_epoch=8, log_freq=4, **run)
    cfg = h.write_config(tmp_path / "t.yaml", h.model_section(world), h.align_datasets(world), run)
    counter = DeviceSyncCounter()
    original_init, original_done = RunnerBase.__init__, MetricsWriter.iteration_done
    original_next = TrainIterator.__next__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        counter.mark(list(self.model.parameters()) + list(self.model.buffers()))

    def iteration_done(self, step, samples):
        counter.step = step
        return original_done(self, step, samples)

    def next_batch(self):
        counter.paused = True
        try:
            batch = original_next(self)
        finally:
            counter.paused = False
        counter.mark(batch)
        return batch

    monkeypatch.setattr(RunnerBase, "__init__", init)
    monkeypatch.setattr(TrainIterator, "__next__", next_batch)
    monkeypatch.setattr(MetricsWriter, "iteration_done", iteration_done)
    with counter:
        train.main(["--cfg-path", str(cfg)])
    return counter


def _between_log_steps(counter: DeviceSyncCounter) -> list[tuple[int, str, str, int]]:
    """Calls from the log line of step 4 to the log line of step 8 (excluded): one log, the iterations of steps 5-8."""
    return [call for call in counter.calls if 4 <= call[0] < 8]


@pytest.mark.parametrize(
    ("run", "per_step", "per_log"),
    [
        ({}, 1, 0),
        ({"accum_grad_iters": 2, "max_grad_norm": 1.0}, 1, 0),
        # fp16: GradScaler.step reads whether the gradients overflowed (torch's own, every optimizer step), and
        # the log step reads the loss scale (to report overflows)
        ({"amp": True, "amp_dtype": "float16"}, 2, 1),
    ],
)
def test_one_host_device_sync_per_step_in_the_training_code(world, tmp_path, monkeypatch, run, per_step, per_log):
    calls = _between_log_steps(_count(world, tmp_path, monkeypatch, **run))
    ours = [call for call in calls if call[2].startswith("minigpt4/")]
    by_step = Counter((step, where.rsplit(":", 1)[0]) for step, _, where, _ in ours)
    # label 4 holds the log of step 4 and the iteration that makes step 5; label 7 the iteration of step 8
    want = {(step, "minigpt4/runners/runner_base.py"): per_step + (per_log if step == 4 else 0) for step in range(4, 8)}
    assert by_step == want, calls
    # the flags every step; the loss with them (3 values) only in the iteration that ends on a log step (step 8)
    reads = [(step, numel) for step, kind, _, numel in ours if kind == "tolist"]
    assert reads == [(4, 2), (5, 2), (6, 2), (7, 3)], calls
    # the only others are inside transformers: its SDPA mask builder asks whether the padding mask is all ones
    # (to drop it), once or twice per LLM forward; nothing else in the step reads a device tensor
    others = {where.rsplit(":", 1)[0] for _, _, where, _ in calls if not where.startswith("minigpt4/")}
    assert others == {"transformers/masking_utils.py"}, calls


@pytest.mark.parametrize(("device", "pinned"), [("cuda", True), ("cpu", False)])
def test_loaders_pin_memory_for_cuda_and_copies_do_not_block(device, pinned, monkeypatch):
    from tests.runners.toy import ToyDataset

    iterator = TrainIterator(
        {"toy": (ToyDataset(), 2, 1.0)}, num_workers=0, rank=0, world_size=1, device=device, seed=0
    )
    assert iterator.sources["toy"]._loader().pin_memory is pinned
    copies = []
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: copies.append(k) or self)
    iterator.device = torch.device("cpu")  # no CUDA here: see where the batch is copied, not the copy itself
    next(iterator)
    assert copies and all(k.get("non_blocking") is True for k in copies)
