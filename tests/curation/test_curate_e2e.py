"""The curation recipe end to end in the tiny world, through ``python -m minigpt4.cli.curate``:

a stage-1 checkpoint (a few real stage-1 steps through ``train.main``) describes held-out images (never in the
tiny stage-2 set), then rule refine, the filters, ``review accept-passed`` and ``export``; stage 2 trains on the
exported folder through ``train.main``. And ``kill -9`` during ``generate``: the rerun ends on the same store as
an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from minigpt4.cli import curate
from minigpt4.curation.export import ExportExists
from minigpt4.curation.store import Store, without_times
from tests.curation.kill import kill_step_at

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE1 = "train_configs/minigpt4_tiny_stage1_pretrain.yaml"
STAGE2 = "train_configs/minigpt4_tiny_stage2_finetune.yaml"
EVAL = "eval_configs/minigpt4_tiny_eval.yaml"
HELD_OUT = ["0", "1", "2", "3", "4", "5", "6"]


def _world_options(world: str) -> list[str]:
    return [
        f"model.llama_model={world}/llama",
        f"model.vit_path={world}/eva_vit_tiny.pth",
        f"model.q_former_model={world}/qformer_tiny.pth",
    ]


@pytest.fixture(scope="module")
def stage1(tiny_world, tmp_path_factory):
    """A stage-1 checkpoint: 6 real stage-1 steps of the tiny recipe (enough to be a trained projection)."""
    import train

    out = tmp_path_factory.mktemp("curate_stage1")
    summary = train.main(
        ["--cfg-path", os.path.join(REPO, STAGE1), "--options", *_world_options(tiny_world)]
        + [
            f"datasets.laion.build_info.storage={tiny_world}/shards/laion/{{00000..00003}}.tar",
            f"datasets.cc_sbu.build_info.storage={tiny_world}/shards/cc_sbu/{{00000..00003}}.tar",
            "datasets.laion.batch_size=4",
            "datasets.cc_sbu.batch_size=4",
            f"run.output_dir={out}",
            "run.max_epoch=1",
            "run.iters_per_epoch=6",
            "run.warmup_steps=2",
            "run.log_freq=2",
        ]
    )
    return summary["last_checkpoint"]


@pytest.fixture(scope="module")
def images(tiny_world, tmp_path_factory):
    """Held-out images (not in the tiny stage-2 set) and one file that is not an image."""
    folder = tmp_path_factory.mktemp("curate_images")
    align = json.load(open(f"{tiny_world}/cc_sbu_align/filter_cap.json"))["annotations"]
    heldout = {item["id"] for item in json.load(open(f"{tiny_world}/heldout/labels.json"))["items"]}
    for name in HELD_OUT:
        assert name in heldout
        shutil.copy(f"{tiny_world}/heldout/image/{name}.jpg", folder / f"heldout_{name}.jpg")
    (folder / "broken.jpg").write_bytes(b"not an image")
    assert not {f"heldout_{n}" for n in HELD_OUT} & {str(a["image_id"]) for a in align}
    return folder


def _config(root, tiny_world, stage1, images) -> str:
    cfg = {
        "store": str(root / "store.jsonl"),
        "images": {"folder": str(images), "sample": 6, "seed": 0},
        "generate": {
            "model_cfg": os.path.join(REPO, EVAL),
            "options": [f"model.ckpt={stage1}", *_world_options(tiny_world)],
            "device": "cpu",
            "batch_size": 3,
            "min_tokens": 20,
            "max_new_tokens": 16,
            "max_length": 200,
        },
        "refine": {"backend": "rule", "prompt_path": os.path.join(REPO, "prompts/refine_paper.txt")},
        "filter": {"min_words": 3, "max_words": 200, "max_repetition": 0.9, "min_similarity": 0.1},
        "export": {"folder": str(root / "cc_sbu_align")},
    }
    path = root / "curate.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run(step: str, cfg: str, *extra: str) -> int:
    return curate.main([*step.split(), "--cfg-path", cfg, *extra])


@pytest.fixture(scope="module")
def curated(tiny_world, stage1, images, tmp_path_factory):
    root = tmp_path_factory.mktemp("curate_run")
    cfg = _config(root, tiny_world, stage1, images)
    assert _run("generate", cfg) == 0
    generated = Store(root / "store.jsonl")
    for step in ("refine", "filter", "review accept-passed", "export"):
        assert _run(step, cfg) == 0
    return root, cfg, generated


def test_generate_records_texts_with_their_provenance(curated, stage1):
    _, _, store = curated
    assert len(store) == 6
    records = {r["id"]: r for r in store}
    broken = [r for r in records.values() if r.get("errors")]
    described = [r for r in records.values() if not r.get("errors")]
    for record in described:
        (version,) = record["texts"]
        entry = record["texts"][version]
        assert record["latest"]["generate"] == version and version.startswith("generate:")
        assert entry["settings"]["checkpoint"] == stage1
        assert entry["settings"]["prompt"] == (
            "Describe this image in detail. Give as many details as possible. Say everything you see."
        )
        assert "###Human: <Img><ImageHere></Img> Describe this image in detail." in entry["conversation"]
        assert entry["settings"]["decoding"]["max_new_tokens"] == 16
        # the continuation rule: fewer than 20 tokens -> "Continue" in the same conversation, appended
        if entry["tokens"]["first"] < 20:
            assert entry["continued"] and "###Human: Continue###Assistant: " in entry["conversation"]
            assert entry["text"].startswith(entry["first"]) and entry["text"].endswith(entry["continuation"].strip())
        else:
            assert not entry["continued"] and entry["text"] == entry["first"]
    assert any(r["texts"][r["latest"]["generate"]]["continued"] for r in described)
    # seed 0 draws the broken file among the 6 of 8: counted and named, never retried as new work
    assert [r["id"] for r in broken] == ["broken"] and "cannot identify image file" in broken[0]["errors"][
        broken[0]["latest"]["generate"]
    ]


def test_refine_filter_accept_and_export_make_a_folder_stage2_trains_on(curated, stage1, tiny_world, tmp_path):
    import train

    root, cfg, _ = curated
    store = Store(root / "store.jsonl")
    exported = json.load(open(root / "cc_sbu_align" / "filter_cap.json"))["annotations"]
    accepted = [r for r in store if (r.get("review") or {}).get("decision") == "accept"]
    assert exported and len(exported) == len(accepted)
    for record in store:
        verdict = record["filters"][record["latest"]["filter"]]
        assert verdict["passed"] == (not verdict["reasons"])
        if record.get("errors"):
            assert [r["rule"] for r in verdict["reasons"]] == ["unreadable_image"]
            continue
        refined = record["texts"][record["latest"]["refine"]]
        assert refined["backend"] == "rule" and refined["input"] == record["latest"]["generate"]
    for ann in exported:
        record = store.get(ann["image_id"])
        assert ann["caption"] == record["texts"][record["latest"]["refine"]]["text"]
        assert (root / "cc_sbu_align" / "image" / f"{ann['image_id']}.jpg").is_file()

    # export refuses to replace the folder unless told
    before = (root / "cc_sbu_align" / "filter_cap.json").stat().st_mtime_ns
    with pytest.raises(ExportExists, match="already exists; give --overwrite"):
        _run("export", cfg)
    assert (root / "cc_sbu_align" / "filter_cap.json").stat().st_mtime_ns == before
    assert _run("export", cfg, "--overwrite") == 0

    summary = train.main(
        ["--cfg-path", os.path.join(REPO, STAGE2), "--options", *_world_options(tiny_world)]
        + [
            f"model.ckpt={stage1}",
            f"model.prompt_path={REPO}/prompts/alignment.txt",
            f"datasets.cc_sbu_align.build_info.storage={root}/cc_sbu_align",
            "run.batch_size_train=2",
            f"run.output_dir={tmp_path}/stage2",
            "run.max_epoch=1",
            "run.iters_per_epoch=3",
            "run.warmup_steps=1",
            "run.log_freq=1",
        ]
    )
    assert summary["global_step"] == 3


def test_steps_are_idempotent(curated):
    root, cfg, _ = curated
    before = (root / "store.jsonl").read_text()
    for step in ("generate", "refine", "filter", "review accept-passed"):
        assert _run(step, cfg) == 0
    assert (root / "store.jsonl").read_text() == before


def test_kill_9_during_generate_then_rerun_equals_the_uninterrupted_store(
    curated, tiny_world, stage1, images, tmp_path
):
    reference = curated[2]  # the store as the uninterrupted generate left it
    cfg = _config(tmp_path, tiny_world, stage1, images)
    store = tmp_path / "store.jsonl"
    kill_step_at("generate", cfg, store, 1)
    killed_with = Store(store)
    assert 1 <= len(killed_with) < 6, "the kill came too late to interrupt anything"
    assert _run("generate", cfg) == 0
    resumed = Store(store)
    assert len(resumed) == 6
    assert {r["id"]: without_times(r) for r in resumed} == {r["id"]: without_times(r) for r in reference}


def test_generate_under_torchrun_equals_one_process(curated, tiny_world, stage1, images, tmp_path):
    """``torchrun --nproc-per-node 2 -m minigpt4.cli.curate generate``: each rank describes its share into its own
    part file, rank 0 merges them; the store holds the one-process records (texts, token counts, provenance)."""
    reference = curated[2]
    cfg = _config(tmp_path, tiny_world, stage1, images)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "minigpt4.cli.curate", "generate", "--cfg-path", cfg]
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sharded = Store(tmp_path / "store.jsonl")
    assert sorted(r["id"] for r in sharded) == sorted(r["id"] for r in reference)
    assert {r["id"]: without_times(r) for r in sharded} == {r["id"]: without_times(r) for r in reference}
    assert not list(tmp_path.glob("store.jsonl.rank*"))  # the part files were merged and removed
