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
    chat = result["chat"]
    assert "error" not in chat, chat.get("stderr_tail")
    assert len(chat["reuse_cache"]) == len(chat["recompute"]) == 3
    assert all(t["new_tokens"] > 0 for t in chat["reuse_cache"] + chat["recompute"])
    assert "| target |" in md.read_text()
