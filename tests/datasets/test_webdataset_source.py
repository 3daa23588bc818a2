import json
import tarfile
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from minigpt4.common.config import Config
from minigpt4.common.registry import registry
from minigpt4.datasets.data_utils import TrainIterator
from minigpt4.datasets.datasets.common import META_KEY, collate
from minigpt4.datasets.datasets.webdataset_source import (
    DEFAULT_CAPTION_KEY,
    DEFAULT_IMAGE_KEY,
    ImageTextWebDataset,
    StreamPlan,
    expand_shards,
    parse_caption_key,
    parse_image_key,
)
from minigpt4.processors.blip_processors import Blip2ImageTrainProcessor, BlipCaptionProcessor
from tests.datasets.shard_utils import good_members, image_bytes, write_good_shards, write_tar
from tests.datasets.test_builders import write_config


def make_dataset(storage, **kw) -> ImageTextWebDataset:
    kw.setdefault("resampled", False)
    kw.setdefault("shuffle_buffer", 1)
    return ImageTextWebDataset(str(storage), Blip2ImageTrainProcessor(image_size=8), BlipCaptionProcessor(), **kw)


def test_expand_shards(tmp_path: Path):
    write_good_shards(tmp_path / "a", 3, 1)
    write_good_shards(tmp_path / "b", 1, 1)
    shards = expand_shards(f"{tmp_path}/a/{{00000..00002}}.tar::{tmp_path}/b/00000.tar")
    assert [Path(s).parent.name + "/" + Path(s).name for s in shards] == [
        "a/00000.tar",
        "a/00001.tar",
        "a/00002.tar",
        "b/00000.tar",
    ]
    assert len(expand_shards(f"{tmp_path}/a/{{00000..00009}}.tar")) == 3  # missing shards are skipped (logged)
    pattern = f"{tmp_path}/nothing/{{00000..00009}}.tar"
    with pytest.raises(FileNotFoundError, match="nothing"):
        expand_shards(pattern)
    with pytest.raises(FileNotFoundError, match="nothing"):
        make_dataset(pattern)


def plant_bad_shards(root: Path) -> tuple[list[str], dict[str, int]]:
    """Shards with good samples and one bad sample of each kind; returns good captions and expected counts."""
    good = []
    members = []
    for i in range(3):
        good.append(f"good {i}")
        members += good_members(f"a{i}", f"good {i}", "JPEG")
    truncated = image_bytes("JPEG", size=(64, 64))
    members += [("bad_trunc.jpg", truncated[: len(truncated) // 2]), ("bad_trunc.txt", b"truncated jpeg")]
    members += [("bad_bytes.jpg", b"this is not an image"), ("bad_bytes.txt", b"not an image")]
    members += [("bad_nocap.jpg", image_bytes())]  # no caption at all
    members += [("bad_emptyjson.jpg", image_bytes()), ("bad_emptyjson.json", json.dumps({"caption": ""}).encode())]
    members += [("bad_noimage.json", json.dumps({"caption": "no image"}).encode())]
    members += [("txtonly.png", image_bytes("PNG")), ("txtonly.json", b"{not json"), ("txtonly.txt", b"from txt")]
    good.append("from txt")
    write_tar(root / "00000.tar", members)
    more = good_members("b0", "good b0", "WEBP") + good_members("b1", "good b1", "PNG")
    good += ["good b0", "good b1"]
    write_tar(root / "00001.tar", more)
    # a truncated tar: its first complete sample is usable, the damaged member ends the shard
    big = image_bytes("PNG", size=(64, 64), noise=True)
    full = write_tar(root / "00002.tar", good_members("c0", "good c0") + [("c1.png", big), ("c1.txt", b"lost c1")])
    with tarfile.open(full) as tar:
        cut = tar.getmember("c1.png").offset_data + len(big) // 2
    full.write_bytes(full.read_bytes()[:cut])
    good.append("good c0")
    (root / "00003.tar").write_bytes(b"garbage, not a tar file" * 10)
    expected = {"image_decode": 2, "no_caption": 2, "no_image": 1, "tar_error": 2}
    return good, expected


def test_bad_samples_are_skipped_and_counted(tmp_path: Path):
    good, expected = plant_bad_shards(tmp_path)
    ds = make_dataset(f"{tmp_path}/{{00000..00003}}.tar")
    samples = list(ds)
    assert sorted(s["answer"] for s in samples) == sorted(good)
    assert all(s["image"].shape == (3, 8, 8) for s in samples)
    role, cursor, counts = samples[-1][META_KEY]
    assert counts == expected


def test_bad_image_log_names_shard_and_key(tmp_path: Path, caplog):
    plant_bad_shards(tmp_path)
    with caplog.at_level("WARNING", logger="minigpt4.datasets.datasets.common"):
        list(make_dataset(f"{tmp_path}/{{00000..00003}}.tar"))
    decode = [r.getMessage() for r in caplog.records if "(image_decode)" in r.getMessage()]
    shard = str(tmp_path / "00000.tar")
    assert len(decode) == 2, decode
    assert any(f"shard {shard}, key bad_trunc (jpg)" in m and "cut short" in m for m in decode), decode
    assert any(f"shard {shard}, key bad_bytes (jpg)" in m and "not a known image format" in m for m in decode), decode
    assert not any("object at 0x" in m or "BytesIO" in m for m in decode), decode


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_counts_reach_the_iterator(tmp_path: Path, num_workers: int):
    good, expected = plant_bad_shards(tmp_path)
    ds = make_dataset(f"{tmp_path}/{{00000..00003}}.tar")
    it = TrainIterator({"x": (ds, 1, 1.0)}, num_workers=num_workers, rank=0, world_size=1, device="cpu", seed=0)
    source = it.sources["x"]
    seen = []
    while source.epoch == 0:
        seen.append(next(it)["answer"][0])
    seen.pop()  # the first batch of epoch 1
    assert sorted(seen) == sorted(good)
    assert it.bad_sample_counts() == expected
    it.close()


def stream_captions(storage: str, resampled: bool, limit: int | None = None) -> dict[tuple[int, int], list[str]]:
    """Captions seen by each (rank, loader worker) of 2 ranks x 2 workers."""
    seen: dict[tuple[int, int], list[str]] = {}
    for rank in range(2):
        ds = make_dataset(storage, resampled=resampled, shuffle_buffer=3).with_plan(StreamPlan(rank=rank, world_size=2))
        loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate)
        for n, batch in enumerate(loader):
            seen.setdefault((rank, batch[META_KEY][0]), []).append(batch["answer"][0])
            if limit is not None and n + 1 >= 2 * limit:
                break
    return seen


def test_ranks_and_workers_read_disjoint_streams(tmp_path: Path):
    captions = write_good_shards(tmp_path, 8, 3)
    seen = stream_captions(f"{tmp_path}/{{00000..00007}}.tar", resampled=False)
    assert len(seen) == 4
    flat = [c for caps in seen.values() for c in caps]
    assert len(flat) == len(set(flat)) and sorted(flat) == sorted(captions)


def test_resampled_streams_differ(tmp_path: Path):
    write_good_shards(tmp_path, 8, 3)
    seen = stream_captions(f"{tmp_path}/{{00000..00007}}.tar", resampled=True, limit=12)
    assert len(seen) == 4
    sequences = [tuple(v[:12]) for v in seen.values()]
    assert len(set(sequences)) == 4


def test_resampled_stream_is_deterministic(tmp_path: Path):
    write_good_shards(tmp_path, 4, 3)
    ds = make_dataset(f"{tmp_path}/{{00000..00003}}.tar", resampled=True, shuffle_buffer=5)

    def first(n):
        out = []
        for sample in ds.with_plan(StreamPlan(seed=3)):
            out.append((sample["answer"], sample["image"]))
            if len(out) == n:
                return out

    a, b = first(20), first(20)
    assert [x[0] for x in a] == [x[0] for x in b]
    assert all((x[1] == y[1]).all() for x, y in zip(a, b))


def test_relative_patterns_are_looked_up_from_the_current_directory(tmp_path: Path, monkeypatch):
    write_good_shards(tmp_path / "data" / "laion", 2, 1)
    monkeypatch.chdir(tmp_path)
    shards = expand_shards("data/laion/{00000..00001}.tar")
    assert shards == [str(tmp_path / "data" / "laion" / f"{i:05d}.tar") for i in range(2)]
    with pytest.raises(FileNotFoundError, match=r"'data/none/\{0\.\.1\}\.tar' \(relative to "):
        expand_shards("data/none/{0..1}.tar")


def test_malformed_json_is_its_own_reason(tmp_path: Path, caplog):
    members = [("badjson.jpg", image_bytes()), ("badjson.json", b'{"caption": "cut')]  # no txt to fall back on
    members += [("zero.jpg", b""), ("zero.txt", b"zero-byte image")]
    members += [("nocap.jpg", image_bytes()), ("nocap.json", json.dumps({"url": "http://x"}).encode())]
    members += good_members("a0", "good a0")  # last: its meta record carries the counts of the bad ones
    write_tar(tmp_path / "00000.tar", members)
    with caplog.at_level("WARNING", logger="minigpt4.datasets.datasets.common"):
        samples = list(make_dataset(f"{tmp_path}/00000.tar"))
    assert [s["answer"] for s in samples] == ["good a0"]
    assert samples[-1][META_KEY][2] == {"bad_json": 1, "image_decode": 1, "no_caption": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert any("(bad_json)" in m and f"shard {tmp_path / '00000.tar'}, key badjson" in m for m in messages), messages


def test_image_and_caption_keys(tmp_path: Path):
    """Other member names (as other img2dataset settings write them) are read when the keys say so."""
    members = []
    for i in range(3):
        members += [
            (f"k{i}.image.png", image_bytes("PNG")),
            (f"k{i}.meta.json", json.dumps({"text": f"t{i}"}).encode()),
        ]
    members += [("k3.image.png", image_bytes("PNG")), ("k3.alt", b"from alt")]
    write_tar(tmp_path / "00000.tar", members)
    storage = f"{tmp_path}/00000.tar"
    default = list(make_dataset(storage))
    assert default == [] or all("answer" not in s for s in default)
    ds = make_dataset(storage, image_key="image.png", caption_key="meta.json:text;alt")
    assert [s["answer"] for s in ds] == ["t0", "t1", "t2", "from alt"]
    assert parse_image_key("JPG; png") == ("jpg", "png")
    assert [(m.ext, m.field) for m in parse_caption_key("json:caption;txt")] == [("json", "caption"), ("txt", None)]
    for bad in ("", " ; ", "json:"):
        with pytest.raises(ValueError, match="caption_key"):
            parse_caption_key(bad)
    with pytest.raises(ValueError, match="image_key"):
        make_dataset(storage, image_key=";")


def test_keys_come_from_the_dataset_yaml(tmp_path: Path):
    """``image_key``/``caption_key`` of a dataset section reach the reader; the shipped defaults are today's."""
    write_tar(tmp_path / "00000.tar", [("k0.webp", image_bytes("WEBP")), ("k0.cap", b"from cap"), ("k0.txt", b"txt")])
    small = {"train": {"name": "blip2_image_train", "image_size": 8}}
    section = {
        "build_info": {"storage": f"{tmp_path}/00000.tar"},
        "vis_processor": small,
        "shuffle_buffer": 1,
        "resampled": False,
    }
    datasets = {"laion": {**section, "image_key": "webp", "caption_key": "cap"}, "cc_sbu": section}
    path = write_config(tmp_path, datasets)
    cfg = Config.load(path)
    assert cfg.datasets_cfg.cc_sbu.image_key == DEFAULT_IMAGE_KEY == "jpg;jpeg;png;webp"
    assert cfg.datasets_cfg.cc_sbu.caption_key == DEFAULT_CAPTION_KEY == "json:caption;txt"
    built = {n: registry.get_builder_class(n)(s).build_datasets()["train"] for n, s in cfg.datasets_cfg.items()}
    assert [s["answer"] for s in built["laion"].with_plan(StreamPlan())] == ["from cap"]
    assert [s["answer"] for s in built["cc_sbu"].with_plan(StreamPlan())] == ["txt"]


def test_repeated_member_is_counted_and_the_first_copy_kept(tmp_path: Path):
    members = [("a0.jpg", image_bytes()), ("a0.txt", b"first"), ("a0.txt", b"second")] + good_members("a1", "a1")
    write_tar(tmp_path / "00000.tar", members)
    batches = list(make_dataset(f"{tmp_path}/00000.tar").with_plan(StreamPlan(batch_size=1)))
    assert [b["answer"][0] for b in batches] == ["first", "a1"]
    assert batches[-1][META_KEY][2] == {"tar_error": 1}
