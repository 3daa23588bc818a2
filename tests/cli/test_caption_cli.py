"""``python -m minigpt4.cli.caption``: folder and JSONL inputs, batching, resuming, sharding across ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt4.cli import caption
from tests.cli.tiny_chat import write_images

REPO = Path(__file__).resolve().parents[2]
GEN = ["--max-new-tokens", "6", "--device", "cpu"]
NAMES = {"a_red.png": "red", "b_green.png": "green", "c_blue.png": "blue", "d_red.png": "red", "e_green.png": "green"}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def folder(tmp_path) -> Path:
    write_images(tmp_path / "images", NAMES)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    return tmp_path / "images"


def test_folder_batched_then_resumed(tiny_eval_cfg, folder, tmp_path, monkeypatch):
    out = tmp_path / "out" / "captions.jsonl"
    argv = ["--cfg-path", str(tiny_eval_cfg), "--images", str(folder), "--out", str(out), *GEN]
    assert caption.main([*argv, "--batch-size", "2"]) == 0
    records = _read(out)
    assert [Path(r["image"]).name for r in records] == sorted(NAMES)
    assert all(r["prompt"] == caption.DEFAULT_PROMPT and isinstance(r["answer"], str) for r in records)
    # batched answers equal one-at-a-time answers (greedy, left padding)
    single = tmp_path / "single.jsonl"
    caption.main(
        ["--cfg-path", str(tiny_eval_cfg), "--images", str(folder), "--out", str(single), "--batch-size", "1", *GEN]
    )
    assert _read(single) == records

    # a re-run captions nothing; a new image is the only one captioned
    calls = []
    real = caption.caption_batch
    monkeypatch.setattr(caption, "caption_batch", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    caption.main([*argv, "--batch-size", "2"])
    assert calls == [] and _read(out) == records
    write_images(folder, {"f_blue.png": "blue"})
    caption.main([*argv, "--batch-size", "2"])
    assert calls == [1]
    assert [Path(r["image"]).name for r in _read(out)] == [*sorted(NAMES), "f_blue.png"]


def test_jsonl_input_with_prompts_and_a_bad_image(tiny_eval_cfg, folder, tmp_path):
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    listing = folder / "list.jsonl"
    lines = [{"image": "a_red.png"}, {"image": "broken.png"}, {"image": "c_blue.png", "prompt": "What colour?"}]
    listing.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "captions.jsonl"
    caption.main(["--cfg-path", str(tiny_eval_cfg), "--images", str(listing), "--out", str(out), *GEN])
    records = _read(out)
    assert [(r["image"], r["prompt"]) for r in records] == [
        ("a_red.png", caption.DEFAULT_PROMPT),
        ("c_blue.png", "What colour?"),
    ]


def test_shards_cover_every_item_once_and_merge(tiny_eval_cfg, folder, tmp_path):
    """Two ranks' shares (as torchrun would run them), an interrupted merge, then a single-process resume."""
    from minigpt4.cli.common import load_chat

    args = caption.parse_args(["--cfg-path", str(tiny_eval_cfg), "--images", str(folder), "--out", "x", *GEN])
    loaded = load_chat(args)
    items = caption.list_items(str(folder), caption.DEFAULT_PROMPT)
    out = tmp_path / "captions.jsonl"
    options = caption.generation_options(args)
    pending = caption.pending_items(items, out)
    caption.run_captioning(loaded.chat, loaded.template, pending, out, 2, options, rank=1, world_size=2)
    part = caption.part_path(out, 1)
    assert [Path(r["image"]).name for r in _read(part)] == ["b_green.png", "d_red.png"]
    assert not out.exists()
    # rank 0 never ran: a later single-process run does only rank 0's items and merges the part file
    pending = caption.pending_items(items, out)
    assert [Path(i.name).name for i in pending] == ["a_red.png", "c_blue.png", "e_green.png"]
    written = caption.run_captioning(loaded.chat, loaded.template, pending, out, 2, options)
    assert written == 3
    assert caption.merge_parts(out, items) == 5
    assert [Path(r["image"]).name for r in _read(out)] == sorted(NAMES)
    assert caption.part_files(out) == []


def test_torchrun_two_ranks(tiny_eval_cfg, folder, tmp_path):
    out = tmp_path / "captions.jsonl"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "minigpt4.cli.caption", "--cfg-path", str(tiny_eval_cfg), "--images", str(folder)]
    command += ["--out", str(out), "--batch-size", "2", *GEN]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert [Path(r["image"]).name for r in _read(out)] == sorted(NAMES)
    assert caption.part_files(out) == []
