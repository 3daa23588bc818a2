import json
from pathlib import Path

import pytest
import torch

from minigpt4.datasets.datasets.cc_sbu_align_dataset import CCSBUAlignDataset
from minigpt4.processors.blip_processors import Blip2ImageEvalProcessor
from tests.datasets.shard_utils import write_align_folder

CAPTIONS = {"2": "The image shows a RED square: big!", "7": "A blue circle.", "11": "Two lines."}


def test_loads_a_good_folder(tmp_path: Path):
    ds = CCSBUAlignDataset(str(write_align_folder(tmp_path, CAPTIONS)), Blip2ImageEvalProcessor(image_size=8))
    assert len(ds) == 3
    sample = ds[0]
    assert sample["image"].shape == (3, 8, 8)
    assert sample["answer"] == CAPTIONS["2"]  # as written: no caption clean-up
    assert [ds[i]["image_id"] for i in range(3)] == [0, 1, 2]
    batch = ds.collater([ds[0], ds[2]])
    assert batch["image"].shape == (2, 3, 8, 8)
    assert batch["answer"] == [CAPTIONS["2"], CAPTIONS["11"]]
    assert torch.equal(batch["image_id"], torch.tensor([0, 2]))


def test_missing_image_fails_with_paths_and_count(tmp_path: Path):
    root = write_align_folder(tmp_path, CAPTIONS, missing=("7", "11"))
    with pytest.raises(FileNotFoundError, match=r"2 of 3 .*7\.jpg.*11\.jpg.*skip_missing"):
        CCSBUAlignDataset(str(root), Blip2ImageEvalProcessor(image_size=8))


def test_skip_missing(tmp_path: Path, caplog):
    root = write_align_folder(tmp_path, CAPTIONS, missing=("7",))
    ds = CCSBUAlignDataset(str(root), Blip2ImageEvalProcessor(image_size=8), skip_missing=True)
    assert [ds[i]["answer"] for i in range(len(ds))] == [CAPTIONS["2"], CAPTIONS["11"]]
    assert "1 of 3" in caplog.text


def test_bad_annotation_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="filter_cap.json"):
        CCSBUAlignDataset(str(tmp_path), Blip2ImageEvalProcessor(image_size=8))
    (tmp_path / "filter_cap.json").write_text('{"annotations": [{"caption": "no id"}]}')
    with pytest.raises(ValueError, match="annotation 0"):
        CCSBUAlignDataset(str(tmp_path), Blip2ImageEvalProcessor(image_size=8))


def test_relative_storage_from_the_current_directory(tmp_path: Path, monkeypatch):
    write_align_folder(tmp_path / "align", CAPTIONS)
    monkeypatch.chdir(tmp_path)
    ds = CCSBUAlignDataset("align", Blip2ImageEvalProcessor(image_size=8))
    assert len(ds) == 3 and ds.storage == str(tmp_path / "align")


def test_invalid_json_names_file_line_and_column(tmp_path: Path):
    from minigpt4.common.config import InputFileError

    folder = write_align_folder(tmp_path / "align", {"1": "One.", "2": "Two."})
    ann = folder / "filter_cap.json"
    good = json.dumps(
        {"annotations": [{"image_id": "1", "caption": "One."}, {"image_id": "2", "caption": "Two."}]}, indent=1
    )
    lines = good.splitlines()
    lines[5] = lines[5].rstrip(",")  # drop the comma after the first annotation: the next one is where it breaks
    ann.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError) as err:
        CCSBUAlignDataset(str(folder), vis_processor=lambda im: im)
    msg = str(err.value)
    line, column = 7, 3
    assert msg.startswith(f"{ann}:{line}:{column}: not valid JSON at line {line}, column {column}: ")
    assert msg.splitlines()[1].strip() == lines[line - 1].strip()
