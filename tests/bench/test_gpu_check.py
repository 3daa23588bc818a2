"""The one GPU check (``bench/gpu_check.sh``) as a CPU dry run at toy sizes: every row runs in its own process
and lands in the JSON; a failing, hanging or out-of-time row is recorded and the others still run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

from bench.common import REPO_ROOT
from bench.gpu_check import cuda_test_ids, main, plan

SCRIPT = os.path.join(REPO_ROOT, "bench", "gpu_check.sh")


def test_cuda_only_tests_are_found_by_their_skips(tmp_path):
    found = cuda_test_ids()
    assert "tests/models/test_eva_vit.py::test_fp16_vit_under_cuda_autocast_matches_fp32" in found
    assert "tests/common/test_dist_utils.py::test_single_process_cuda_sets_gpu" in found

    (tmp_path / "test_x.py").write_text(
        textwrap.dedent(
            """
            import pytest, torch

            @pytest.mark.skipif(not torch.cuda.is_available(), reason="x")
            def test_decorated(): ...

            def test_in_body():
                if not torch.cuda.is_available():
                    pytest.skip("x")

            @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
            def test_inverse(): ...

            def test_plain(): ...
            """
        )
    )
    names = {i.split("::")[1] for i in cuda_test_ids(str(tmp_path))}
    assert names == {"test_decorated", "test_in_body"}


def test_time_budget_stops_cleanly_with_the_reason(tmp_path, capsys):
    out = tmp_path / "check.json"
    result = main(["--device", "cpu", "--toy", "--budget-s", "0", "--json", str(out)])
    assert json.loads(out.read_text())["rows"].keys() == {r.name for r in plan(True)}
    assert all(r["status"] == "skipped" and "time budget" in r["reason"] for r in result["rows"].values())
    assert "| chat | skipped |" in capsys.readouterr().out


def test_a_hanging_row_is_killed_at_the_deadline(tmp_path):
    result = main(["--device", "cpu", "--toy", "--only", "nccl,peak", "--inject-hang", "nccl", "--budget-s", "8",
                   "--json", str(tmp_path / "c.json")])  # fmt: skip
    assert result["rows"]["nccl"]["status"] == "timeout"
    assert result["rows"]["peak"]["status"] == "skipped" and "time budget" in result["rows"]["peak"]["reason"]


def test_dry_run_end_to_end_on_cpu_with_a_failing_row(tmp_path):
    """``bench/gpu_check.sh --device cpu --toy``: every row, one made to fail, the rest unaffected."""
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [SCRIPT, "--device", "cpu", "--toy", "--inject-failure", "stage1_bf16", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=1500,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == [r.name for r in plan(True)]
    broken = rows.pop("stage1_bf16")
    assert broken["status"] == "failed" and "failure injected" in broken["log_tail"]
    assert {name: r["status"] for name, r in rows.items()} == dict.fromkeys(rows, "ok")

    assert rows["cuda_tests"]["tests"] and rows["cuda_tests"]["counts"].get("skipped") == len(
        rows["cuda_tests"]["tests"]
    )  # on a CPU they all skip, each with its reason
    assert rows["nccl"]["backend"] == "gloo" and rows["nccl"]["all_reduce"] == [1.0] * 4
    assert rows["peak"]["peak"]["fp16"]["peak_flops"] > 0
    for name in ("stage1_fp16_scaler", "stage2_fp16_scaler", "stage2_bf16", "memory_stage2_13b_llm_grad_ckpt"):
        r = rows[name]
        assert r["loss_finite"] and all(math.isfinite(v) for v in r["losses"])
        assert r["samples_per_s"] > 0 and r["mfu"] > 0 and r["peak_mem_gib"] > 0
    assert rows["stage1_fp16_scaler"]["loss_scale"] > 0 and rows["stage2_bf16"]["loss_scale"] is None
    assert rows["memory_stage2_13b"]["llm_layers"] > rows["memory_stage2_7b"]["llm_layers"]
    assert rows["chat"]["new_tokens"] == 4
    table = proc.stdout
    assert all(f"| {name} |" in table for name in [*rows, "stage1_bf16"])
