"""Smoke test of the benchmark harness: ``python -m bench.run --quick`` runs every CPU section on tiny shapes
and writes valid JSON (no timing assertions: this checks the harness, not the machine)."""

import json
import math

from bench.run import main


def test_quick_run_writes_json(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "BENCHMARKS.md"
    main(["--quick", "--json", str(out), "--assets", str(tmp_path / "assets"), "--append-md", "--md-path", str(md)])
    result = json.loads(out.read_text())
    assert result["quick"] is True
    assert result["peak"]["bf16"]["peak_flops"] > 0 and result["peak"]["fp32"]["peak_flops"] > 0
    rows = result["train"]
    assert {r["variant"] for r in rows} == {"fp32", "bf16"}
    for row in rows:
        assert "error" not in row, row.get("stderr_tail")
        assert row["samples_per_s"] > 0 and math.isfinite(row["loss_first_last"][-1])
        assert row["flops"]["total"] > 0 and row["memory"]["peak_rss_mib"] > 0
    assert [r["num_workers"] for r in result["data"]["rows"]] == [0, 1, 2]
    assert [r["num_workers"] for r in result["data"]["legacy_rows"]] == [0, 1, 2]  # the previous reader, same run
    assert all(r["samples_per_s"] > 0 for r in result["data"]["rows"] + result["data"]["legacy_rows"])
    chat = result["chat"]
    assert "error" not in chat, chat.get("stderr_tail")
    assert len(chat["reuse_cache"]) == len(chat["recompute"]) == 3
    assert all(t["new_tokens"] > 0 for t in chat["reuse_cache"] + chat["recompute"])
    assert "| target |" in md.read_text()


def test_gpu_mode_fails_clearly_without_cuda():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        main(["--gpu"])


def test_random_full_model_builder_runs_small_on_cpu(tmp_path):
    """The GPU mode's builder (project MiniGPT4, random ViT, random LLaMA from a config) at toy sizes."""
    import torch

    from bench.assets import LlamaDims
    from bench.gpu import STAGE2, build_random_model, stage_samples

    small = {"vit_width": 32, "vit_depth": 1, "vit_heads": 2, "vit_mlp_dim": 64, "image_size": 56,
             "qformer_hidden_size": 32, "qformer_num_layers": 2, "qformer_num_heads": 2,
             "qformer_intermediate_size": 64, "torch_dtype": "float32", "vit_precision": "fp32"}  # fmt: skip
    model = build_random_model({**small, **STAGE2}, LlamaDims(32, 1, 2, 2, 64, 1000, 512), "cpu", str(tmp_path / "tok"))
    loss = model(stage_samples(model, 2, STAGE2, "cpu"))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and model.llama_proj.weight.grad is not None
    assert model.llama_model.config.vocab_size == 1000


def test_gpu_mode_dry_run_on_cpu_at_toy_sizes():
    """The whole GPU-mode procedure (build, stage-1/2 steps, FLOPs, report) on a CPU with toy sizes."""
    from bench.assets import LlamaDims
    from bench.gpu import run_gpu
    from bench.report import gpu_md

    toy = {"vit_width": 32, "vit_depth": 1, "vit_heads": 2, "vit_mlp_dim": 64, "image_size": 56,
           "qformer_hidden_size": 32, "qformer_num_layers": 2, "qformer_num_heads": 2,
           "qformer_intermediate_size": 64}  # fmt: skip
    result = run_gpu(quick=True, device="cpu", sizes=toy, llama=LlamaDims(32, 1, 2, 2, 64, 1000, 512))
    for name in ("stage1", "stage2", "stage2_llm_grad_ckpt"):
        assert result[name]["samples_per_s"] > 0 and result[name]["model_flops_per_step"] > 0
    assert "stage2_llm_grad_ckpt" in "\n".join(gpu_md(result))
