"""The local Hugging Face refine backend (``refine.backend: hf``) on the tiny world's LLaMA: batched answers equal
one-at-a-time answers, the provenance is recorded, a rerun does nothing, and ``kill -9`` during refine then a rerun
ends on the store an uninterrupted run writes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml

from minigpt4.cli import curate
from minigpt4.curation.store import Store, without_times
from tests.curation.kill import kill_step_at, store_lines

REPO = str(Path(__file__).resolve().parents[2])
SENTENCES = [
    "a red circle on the left of the picture. a red circle on the left",
    "The image shows a small group of blue squares. It is located",
    "a large yellow star at the top \u2603 of the picture",
    "several green triangles in the center. They are small.",
]


def write_store(path: Path, n: int) -> None:
    store = Store(path)
    store.append(
        [
            {
                "id": str(i),
                "image": {"path": f"/nowhere/{i}.png"},  # refine reads texts only
                "texts": {"generate:t": {"step": "generate", "text": SENTENCES[i % len(SENTENCES)] + f" ({i})"}},
                "latest": {"generate": "generate:t"},
            }
            for i in range(n)
        ]
    )
    store.close()


def write_config(root: Path, world: str, n: int, batch_size: int, max_new_tokens: int = 24) -> str:
    root.mkdir(parents=True, exist_ok=True)
    write_store(root / "store.jsonl", n)
    cfg = {
        "store": str(root / "store.jsonl"),
        "refine": {
            "backend": "hf",
            "prompt_path": os.path.join(REPO, "prompts/refine_paper.txt"),
            "hf": {
                "model": f"{world}/llama",
                "template": "###Human: {} ###Assistant: ",  # the tiny LLaMA speaks Vicuna v0
                "stop": "###",
                "batch_size": batch_size,
                "max_new_tokens": max_new_tokens,
            },
        },
    }
    path = root / "curate.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def refined(store_path: Path) -> dict[str, dict]:
    return {r["id"]: r["texts"][r["latest"]["refine"]] for r in Store(store_path)}


@pytest.fixture(scope="module")
def batched(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("refine_hf")
    cfg = write_config(root / "batched", tiny_world, 6, batch_size=4)
    assert curate.main(["refine", "--cfg-path", cfg]) == 0
    return root, cfg


def test_batched_answers_equal_one_at_a_time_and_keep_their_provenance(batched, tiny_world):
    root, _ = batched
    single = write_config(root / "single", tiny_world, 6, batch_size=1)
    assert curate.main(["refine", "--cfg-path", single]) == 0
    many, one = refined(root / "batched" / "store.jsonl"), refined(root / "single" / "store.jsonl")
    assert {k: v["text"] for k, v in many.items()} == {k: v["text"] for k, v in one.items()}
    assert all(len(v["text"].split()) >= 3 for v in many.values()), many  # it answered (the tiny LLM's words)
    entry = many["0"]
    assert entry["backend"] == "hf" and entry["model"] == os.path.abspath(f"{tiny_world}/llama")
    assert entry["input"] == "generate:t" and entry["settings"]["max_new_tokens"] == 24
    assert entry["settings"]["prompt"].startswith("Fix the error in the given paragraph.")
    assert entry["usage"]["prompt_tokens"] > 20 and 0 <= entry["usage"]["completion_tokens"] <= 24


def test_a_rerun_does_nothing(batched):
    root, cfg = batched
    before = (root / "batched" / "store.jsonl").read_text()
    assert curate.main(["refine", "--cfg-path", cfg]) == 0
    assert (root / "batched" / "store.jsonl").read_text() == before


def test_kill_9_during_refine_then_rerun_equals_the_uninterrupted_store(tiny_world, tmp_path):
    n = 40
    reference_cfg = write_config(tmp_path / "whole", tiny_world, n, batch_size=1, max_new_tokens=16)
    assert curate.main(["refine", "--cfg-path", reference_cfg]) == 0
    cfg = write_config(tmp_path / "killed", tiny_world, n, batch_size=1, max_new_tokens=16)
    store = tmp_path / "killed" / "store.jsonl"
    returncode = kill_step_at("refine", cfg, store, store_lines(store) + 3)
    assert returncode == -signal.SIGKILL, "refine finished before it could be killed"
    done_before = sum(1 for r in Store(store) if (r.get("latest") or {}).get("refine"))
    assert 3 <= done_before < n
    assert curate.main(["refine", "--cfg-path", cfg]) == 0
    got = {r["id"]: without_times(r) for r in Store(store)}
    want = {r["id"]: without_times(r) for r in Store(tmp_path / "whole" / "store.jsonl")}
    assert got == want
