"""The pre-flight memory estimate against the measured peak of one CPU training step.

For each bench configuration (``tiny``, ``bench_small``): build the model, run one no-grad forward at batch 1
(kernels and thread pools initialised), reset the peak RSS (``/proc/self/clear_refs``), run one full step
(forward, backward through the frozen LLM, AdamW) at the given batch with answers of ``max_txt_len`` tokens, and
compare the peak RSS growth with the estimate's optimizer + activations (the weights are resident before the
step). Each configuration runs in its own process::

    python -m bench.preflight_memory --assets DIR --batch 8 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import torch

MIB = 2**20


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def measure(name: str, assets: str, batch: int) -> dict[str, Any]:
    from bench.models import build_model
    from minigpt4.common.preflight import estimate_memory

    torch.manual_seed(0)
    model, cfg = build_model(name, assets)
    model.train()
    size, max_len = model.cfg.image_size, model.max_txt_len
    answer = " ".join(["a red circle on the left of a blue square"] * max_len)  # truncated to max_txt_len
    with torch.no_grad():
        model({"image": torch.randn(1, 3, size, size), "answer": [answer]})
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    samples = {"image": torch.randn(batch, 3, size, size), "answer": [answer] * batch}
    reset_peak()
    before = _status_kib("VmRSS") * 1024
    loss = model(samples)["loss"]
    loss.backward()
    optimizer.step()
    peak = _status_kib("VmHWM") * 1024
    estimate = estimate_memory(model.cfg, model.llama_model.config, batch, prompt_tokens=0)
    predicted = estimate.optimizer + estimate.activations
    measured = peak - before
    return {
        "config": name,
        "batch": batch,
        "seq_len": estimate.seq_len,
        "measured_step_mib": measured / MIB,
        "estimated_step_mib": predicted / MIB,
        "ratio": predicted / measured,
        "estimate_parts_mib": {k: v / MIB for k, v in estimate.parts.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--configs", nargs="+", default=["tiny", "bench_small"])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.one:
        sys.stdout.write(json.dumps(measure(args.configs[0], args.assets, args.batch)) + "\n")
        return
    results = []
    for name in args.configs:
        cmd = [sys.executable, "-m", "bench.preflight_memory", "--one", "--assets", args.assets]
        cmd += ["--batch", str(args.batch), "--configs", name]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ)).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        sys.stdout.write(json.dumps(results[-1]) + "\n")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
