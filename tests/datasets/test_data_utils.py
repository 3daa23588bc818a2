import math
import tarfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from minigpt4.common.run_config import RunConfig
from minigpt4.datasets import data_utils
from minigpt4.datasets.data_utils import TrainIterator, build_train_iterator
from minigpt4.datasets.datasets.cc_sbu_align_dataset import CCSBUAlignDataset
from minigpt4.datasets.datasets.webdataset_source import ImageTextWebDataset
from minigpt4.processors.blip_processors import Blip2ImageTrainProcessor, BlipCaptionProcessor
from tests.datasets.shard_utils import good_members, write_align_folder, write_good_shards, write_tar


class Named(Dataset):
    def __init__(self, name: str, n: int = 8) -> None:
        self.name, self.n = name, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((3, 2, 2), float(i)), "answer": f"{self.name}{i}"}


def test_ratio_mix_within_tolerance():
    it = TrainIterator(
        {"a": (Named("a"), 2, 3.0), "b": (Named("b"), 2, 1.0)},
        num_workers=0,
        rank=0,
        world_size=1,
        device="cpu",
        seed=1,
    )
    n = 800
    hits = sum(next(it)["answer"][0].startswith("a") for _ in range(n))
    p = 0.75
    assert abs(hits - n * p) <= 4 * math.sqrt(n * p * (1 - p))


def test_map_style_epochs_split_ranks_and_reshuffle():
    seen = {}
    for rank in range(2):
        it = TrainIterator({"a": (Named("a"), 2, 1.0)}, num_workers=0, rank=rank, world_size=2, device="cpu", seed=0)
        seen[rank] = [x for _ in range(4) for x in next(it)["answer"]]
    assert set(seen[0][:4]).isdisjoint(seen[1][:4])
    assert sorted(seen[0][:4] + seen[1][:4]) == [f"a{i}" for i in range(8)]
    assert seen[0][:4] != seen[0][4:]  # a new epoch, a new order


def make_sources(tmp_path: Path) -> dict:
    write_good_shards(tmp_path / "laion", 4, 5, prefix="l")
    bad = good_members("x0", "l bad neighbour") + [("x1.jpg", b"broken"), ("x1.txt", b"broken")]
    write_tar(tmp_path / "laion" / "00004.tar", bad + good_members("x2", "l after bad"))
    write_good_shards(tmp_path / "cc", 2, 4, prefix="c")
    align = write_align_folder(tmp_path / "align", {str(i): f"Caption {i}." for i in range(10)})
    vis, text = Blip2ImageTrainProcessor(image_size=8), BlipCaptionProcessor()
    return {
        "laion": (ImageTextWebDataset(f"{tmp_path}/laion/{{00000..00004}}.tar", vis, text, shuffle_buffer=4), 3, 2.0),
        "cc_sbu": (
            ImageTextWebDataset(f"{tmp_path}/cc/{{00000..00001}}.tar", vis, text, resampled=False, shuffle_buffer=3),
            2,
            1.0,
        ),
        "align": (CCSBUAlignDataset(str(align), vis), 3, 1.0),
    }


def draw(it: TrainIterator, n: int) -> list[tuple]:
    return [(tuple(b["answer"]), b["image"].clone()) for b in (next(it) for _ in range(n))]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_exact_resume(tmp_path: Path, num_workers: int):
    sources = make_sources(tmp_path)

    def fresh() -> TrainIterator:
        return TrainIterator(sources, num_workers=num_workers, rank=0, world_size=1, device="cpu", seed=7)

    whole = fresh()
    expected = draw(whole, 30)
    first = fresh()
    assert [a for a, _ in draw(first, 13)] == [a for a, _ in expected[:13]]
    state = first.state_dict()
    counts_at_save = first.bad_sample_counts()
    del first
    resumed = fresh()
    resumed.load_state_dict(state)
    assert resumed.bad_sample_counts() == counts_at_save
    rest = draw(resumed, 17)
    assert [a for a, _ in rest] == [a for a, _ in expected[13:]]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(rest, expected[13:]))
    assert resumed.bad_sample_counts() == whole.bad_sample_counts()
    assert whole.bad_sample_counts().get("image_decode", 0) >= 1
    assert {name for name, s in whole.sources.items() if s.batches or s.epoch} == {"laion", "cc_sbu", "align"}


def test_build_train_iterator_batch_sizes(tmp_path: Path):
    run = OmegaConf.merge(OmegaConf.structured(RunConfig), {"batch_size_train": 4, "device": "cpu"})
    cfgs = {
        "a": OmegaConf.create({"batch_size": None, "sample_ratio": 1.0}),
        "b": OmegaConf.create({"batch_size": 2, "sample_ratio": 1.0}),
    }
    it = build_train_iterator({"a": {"train": Named("a")}, "b": Named("b")}, cfgs, run, device="cpu")
    sizes = {}
    for _ in range(20):
        batch = next(it)
        sizes[batch["answer"][0][0]] = len(batch["answer"])
    assert sizes == {"a": 4, "b": 2}
    with pytest.raises(ValueError, match="no full batch"):
        next(iter(build_train_iterator({"a": Named("a", 3)}, cfgs, run)))


def test_resume_at_any_point_of_uneven_finite_streams(tmp_path: Path):
    """Two workers, shards of different sizes: streams end at different times; resume anywhere is exact."""
    for s, n in enumerate([7, 2, 5]):
        members = [m for i in range(n) for m in good_members(f"{s}_{i}", f"s{s} i{i}")]
        write_tar(tmp_path / f"{s:05d}.tar", members + ([("bad.jpg", b"xx"), ("bad.txt", b"x")] if s == 1 else []))
    damaged = write_tar(tmp_path / "00003.tar", [m for i in range(4) for m in good_members(f"d_{i}", f"d{i}")])
    with tarfile.open(damaged) as tar:
        cut = tar.getmember("d_2.jpg").offset_data + 100
    damaged.write_bytes(damaged.read_bytes()[:cut])  # ends inside a member: a tar_error after two samples
    vis, text = Blip2ImageTrainProcessor(image_size=8), BlipCaptionProcessor()
    ds = ImageTextWebDataset(f"{tmp_path}/{{00000..00003}}.tar", vis, text, resampled=False, shuffle_buffer=3)

    def fresh() -> TrainIterator:
        return TrainIterator({"a": (ds, 2, 1.0)}, num_workers=2, rank=0, world_size=1, device="cpu", seed=5)

    rng_before = torch.get_rng_state()
    whole = fresh()
    expected = [next(whole)["answer"] for _ in range(12)]
    assert torch.equal(rng_before, torch.get_rng_state())  # loaders never draw from the global RNG
    for k in (3, 6, 8):
        first = fresh()
        for _ in range(k):
            next(first)
        resumed = fresh()
        resumed.load_state_dict(first.state_dict())
        assert [next(resumed)["answer"] for _ in range(12 - k)] == expected[k:]
        assert resumed.bad_sample_counts() == whole.bad_sample_counts()
    assert whole.bad_sample_counts()["tar_error"] >= 1 and whole.bad_sample_counts()["image_decode"] >= 1


def test_state_gathers_every_rank_under_ddp(monkeypatch):
    """Each rank's state goes into the checkpoint; a rank resumes from its own entry."""
    its = [
        TrainIterator(
            {"a": (Named("a"), 2, 1.0), "b": (Named("b"), 2, 1.0)},
            num_workers=0,
            rank=r,
            world_size=2,
            device="cpu",
            seed=3,
        )
        for r in range(2)
    ]
    drawn = [[next(it)["answer"] for _ in range(3)] for it in its]
    assert drawn[0] != drawn[1]
    locals_ = [it.local_state_dict() for it in its]
    monkeypatch.setattr(data_utils.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(data_utils.dist, "get_world_size", lambda: 2)

    def all_gather_object(out, obj):
        out[:] = [(r, locals_[r]) for r in range(2)]

    monkeypatch.setattr(data_utils.dist, "all_gather_object", all_gather_object)
    state = its[0].state_dict()
    monkeypatch.undo()
    assert sorted(state["ranks"]) == [0, 1] and state["world_size"] == 2
    expected = [next(it)["answer"] for it in its]
    for r in range(2):
        resumed = TrainIterator(
            {"a": (Named("a"), 2, 1.0), "b": (Named("b"), 2, 1.0)},
            num_workers=0,
            rank=r,
            world_size=2,
            device="cpu",
            seed=3,
        )
        resumed.load_state_dict(state)
        assert next(resumed)["answer"] == expected[r]


def test_map_style_resume_with_other_worker_count():
    def fresh(workers: int) -> TrainIterator:
        return TrainIterator(
            {"a": (Named("a", 12), 2, 1.0)}, num_workers=workers, rank=0, world_size=1, device="cpu", seed=2
        )

    whole = fresh(0)
    expected = [next(whole)["answer"] for _ in range(9)]
    first = fresh(0)
    for _ in range(4):
        next(first)
    resumed = fresh(2)
    resumed.load_state_dict(first.state_dict())
    assert [next(resumed)["answer"] for _ in range(5)] == expected[4:]
