import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from minigpt4.datasets.datasets.cc_sbu_align_dataset import CCSBUAlignDataset
from minigpt4.datasets.datasets.webdataset_source import ImageTextWebDataset
from minigpt4.processors.blip_processors import Blip2ImageEvalProcessor, BlipCaptionProcessor

DATASET_DIR = Path(__file__).resolve().parents[2] / "dataset"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"prepare_{name}", DATASET_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(DATASET_DIR))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DATASET_DIR))
    return module


BLIP_JSON = [
    {"url": "http://a.example/1.jpg", "caption": "a dog on a beach"},
    {"url": "http://a.example/2.jpg", "caption": "two\tcats\non a sofa"},
    {"url": "http://a.example/3.jpg", "caption": ""},
]


@pytest.mark.parametrize("script", ["convert_laion", "convert_cc_sbu"])
def test_convert_blip_json_to_tsv(tmp_path: Path, script: str, capsys):
    src = tmp_path / "caps.json"
    src.write_text(json.dumps(BLIP_JSON))
    assert load_script(script).main([str(src)]) == 0
    lines = (tmp_path / "caps.tsv").read_text().splitlines()
    assert lines == [
        "url\tcaption",
        "http://a.example/1.jpg\ta dog on a beach",
        "http://a.example/2.jpg\ttwo cats on a sofa",
    ]
    assert "1 records without url or caption" in capsys.readouterr().out


def test_download_scripts_call_img2dataset():
    for name, tsv in (("laion", "laion_synthetic_filtered_large.tsv"), ("cc_sbu", "ccs_synthetic_filtered_large.tsv")):
        text = (DATASET_DIR / f"download_{name}.sh").read_text()
        assert "img2dataset" in text and tsv in text and "--output_format webdataset" in text


def make_folder(root: Path) -> Path:
    root.mkdir()
    Image.new("RGB", (20, 16), (255, 0, 0)).save(root / "red.jpg")
    Image.new("RGBA", (20, 16), (0, 255, 0, 128)).save(root / "green.png")
    Image.new("L", (20, 16), 80).save(root / "gray.bmp")
    (root / "sub").mkdir()
    Image.new("RGB", (20, 16), (0, 0, 255)).save(root / "sub" / "blue.webp")
    for name, caption in (
        ("red", "A red image."),
        ("green", "A green image."),
        ("gray", "Gray."),
        ("sub/blue", "Blue!"),
    ):
        (root / f"{name}.txt").write_text(caption)
    Image.new("RGB", (8, 8)).save(root / "nocaption.jpg")
    (root / "broken.jpg").write_bytes(b"not an image")
    (root / "broken.txt").write_text("broken")
    return root


def test_make_shards_folder_to_webdataset(tmp_path: Path):
    folder = make_folder(tmp_path / "imgs")
    out = tmp_path / "shards"
    assert (
        load_script("make_shards").main(["--folder", str(folder), "--out", str(out), "--samples-per-shard", "3"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["00000.tar", "00001.tar"]
    ds = ImageTextWebDataset(
        f"{out}/{{00000..00001}}.tar", Blip2ImageEvalProcessor(image_size=8), BlipCaptionProcessor(), resampled=False
    )
    answers = sorted(s["answer"] for s in ds)
    assert answers == ["a green image", "a red image", "blue", "gray"]


def test_make_shards_jsonl_to_align(tmp_path: Path):
    folder = make_folder(tmp_path / "imgs")
    jsonl = tmp_path / "pairs.jsonl"
    rows = [
        {"image": "imgs/red.jpg", "caption": "A red image."},
        {"image": str(folder / "green.png"), "caption": "Green."},
    ]
    rows.append({"image": "imgs/broken.jpg", "caption": "x"})
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "align"
    assert load_script("make_shards").main(["--jsonl", str(jsonl), "--out", str(out), "--format", "align"]) == 0
    ds = CCSBUAlignDataset(str(out), Blip2ImageEvalProcessor(image_size=8))
    assert [ds[i]["answer"] for i in range(len(ds))] == ["A red image.", "Green."]
    assert json.loads((out / "filter_cap.json").read_text())["annotations"][1] == {"image_id": "1", "caption": "Green."}


def test_make_shards_nothing_usable(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    assert load_script("make_shards").main(["--folder", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
