from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from minigpt4.common.config import Config, ConfigError
from minigpt4.common.registry import registry
from minigpt4.datasets.builders import CCSBUAlignBuilder, ImageTextWebDatasetBuilder
from minigpt4.datasets.data_utils import build_train_iterator
from minigpt4.datasets.datasets.cc_sbu_align_dataset import CCSBUAlignDataset
from minigpt4.datasets.datasets.webdataset_source import ImageTextWebDataset
from minigpt4.processors.blip_processors import Blip2ImageTrainProcessor, BlipCaptionProcessor
from minigpt4.tasks.image_text_pretrain import ImageTextPretrainTask
from tests.datasets.shard_utils import write_align_folder, write_good_shards


def test_one_webdataset_builder_serves_laion_and_cc_sbu():
    assert registry.get_builder_class("laion") is ImageTextWebDatasetBuilder
    assert registry.get_builder_class("cc_sbu") is ImageTextWebDatasetBuilder
    assert registry.get_builder_class("cc_sbu_align") is CCSBUAlignBuilder
    for name in ("laion", "cc_sbu"):
        path = ImageTextWebDatasetBuilder.default_config_path(name=name)
        assert path.endswith(f"configs/datasets/{name}/defaults.yaml")
        assert OmegaConf.is_missing(ImageTextWebDatasetBuilder.default_config(name=name).build_info, "storage")
        assert ImageTextWebDatasetBuilder({"build_info": {"storage": "x"}}, name=name).name == name


def test_default_yaml_has_required_storage():
    cfg = CCSBUAlignBuilder.default_config()
    assert OmegaConf.is_missing(cfg.build_info, "storage")
    assert CCSBUAlignBuilder.default_config_path().endswith(".yaml")


def write_config(tmp_path: Path, datasets: dict, run: dict | None = None) -> Path:
    cfg = {
        "model": {"arch": "mini_gpt4", "model_type": "tiny"},
        "datasets": datasets,
        "run": {"task": "image_text_pretrain", "device": "cpu", "batch_size_train": 2, **(run or {})},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_builders_from_validated_config(tmp_path: Path):
    write_good_shards(tmp_path / "laion", 2, 4, prefix="l")
    write_good_shards(tmp_path / "cc", 1, 4, prefix="c")
    align = write_align_folder(tmp_path / "align", {"1": "One.", "2": "Two."})
    small = {"train": {"name": "blip2_image_train", "image_size": 16}}
    path = write_config(
        tmp_path,
        {
            "laion": {
                "build_info": {"storage": f"{tmp_path}/laion/{{00000..00001}}.tar"},
                "vis_processor": small,
                "sample_ratio": 115,
                "batch_size": 3,
            },
            "cc_sbu": {
                "build_info": {"storage": f"{tmp_path}/cc/00000.tar"},
                "vis_processor": small,
                "sample_ratio": 14,
            },
            "cc_sbu_align": {"build_info": {"storage": str(align)}, "vis_processor": small},
        },
    )
    cfg = Config.load(path)
    assert cfg.datasets_cfg.laion.shuffle_buffer == 1000 and cfg.datasets_cfg.laion.resampled is True
    assert cfg.datasets_cfg.cc_sbu.batch_size is None
    assert cfg.datasets_cfg.cc_sbu_align.build_info.skip_missing is False
    datasets = {}
    for name, section in cfg.datasets_cfg.items():
        built = registry.get_builder_class(name)(section, name=name).build_datasets()
        assert list(built) == ["train"]
        datasets[name] = built
    laion = datasets["laion"]["train"]
    assert isinstance(laion, ImageTextWebDataset) and isinstance(datasets["cc_sbu_align"]["train"], CCSBUAlignDataset)
    assert isinstance(laion.vis_processor, Blip2ImageTrainProcessor) and laion.vis_processor.image_size == 16
    assert isinstance(laion.text_processor, BlipCaptionProcessor)
    it = build_train_iterator(datasets, cfg.datasets_cfg, cfg.run_cfg, device="cpu")
    batch = next(it)
    assert batch["image"].shape[1:] == (3, 16, 16)


def test_config_errors_name_the_key(tmp_path: Path):
    path = write_config(tmp_path, {"laion": {"vis_processor": {"train": {"name": "blip2_image_train"}}}})
    with pytest.raises(ConfigError, match=r"datasets\.laion\.build_info\.storage"):
        Config.load(path)
    path = write_config(tmp_path, {"cc_sbu": {"build_info": {"storage": "x.tar"}, "shuffle_bufer": 3}})
    with pytest.raises(ConfigError, match="shuffle_bufer"):
        Config.load(path)
    path = write_config(
        tmp_path, {"cc_sbu_align": {"build_info": {"storage": "x"}, "vis_processor": {"train": {"name": "nope"}}}}
    )
    with pytest.raises(ConfigError, match="nope"):
        Config.load(path)


def test_missing_shards_fail_when_building(tmp_path: Path):
    processors = {
        "vis_processor": {"train": {"name": "blip2_image_train", "image_size": 16}},
        "text_processor": {"train": {"name": "blip_caption"}},
    }
    builder = ImageTextWebDatasetBuilder(
        {"build_info": {"storage": f"{tmp_path}/none/{{0..3}}.tar"}, **processors}, name="laion"
    )
    with pytest.raises(FileNotFoundError, match="none"):
        builder.build_datasets()


# splits --------------------------------------------------------------------------------------------------

VAL_PROCESSORS = {
    "vis_processor": {
        "train": {"name": "blip2_image_train", "image_size": 16},
        "val": {"name": "blip2_image_eval", "image_size": 16},
    },
    "text_processor": {"train": {"name": "blip_caption"}, "val": {"name": "blip_caption"}},
}


def _built(path: Path) -> dict:
    return ImageTextPretrainTask().build_datasets(Config.load(path))


def test_each_split_reads_its_own_storage(tmp_path: Path):
    train = write_align_folder(tmp_path / "train", {"1": "Train one.", "2": "Train two."})
    val = write_align_folder(tmp_path / "val", {"7": "Held out."})
    write_good_shards(tmp_path / "shards_train", 1, 3, prefix="train caption ")
    write_good_shards(tmp_path / "shards_val", 1, 2, prefix="val caption ")
    path = write_config(
        tmp_path,
        {
            "cc_sbu_align": {
                "splits": ["train", "val"],
                "build_info": {"storage": str(train), "split_storage": {"val": str(val)}},
                **VAL_PROCESSORS,
            },
            "laion": {
                "splits": ["train", "val"],
                "resampled": False,
                "build_info": {
                    "storage": f"{tmp_path}/shards_train/00000.tar",
                    "split_storage": {"val": f"{tmp_path}/shards_val/00000.tar"},
                },
                **VAL_PROCESSORS,
            },
        },
    )
    datasets = _built(path)
    align = datasets["cc_sbu_align"]
    assert [align["train"][i]["answer"] for i in range(2)] == ["Train one.", "Train two."]
    assert len(align["val"]) == 1 and align["val"][0]["answer"] == "Held out."
    laion = datasets["laion"]
    assert all(s["answer"].startswith("train caption") for s in laion["train"])
    val_answers = [s["answer"] for s in laion["val"]]
    assert len(val_answers) == 2 and all(a.startswith("val caption") for a in val_answers)


@pytest.mark.parametrize("name", ["cc_sbu_align", "laion"])
def test_a_split_without_storage_is_an_error_naming_dataset_and_split(tmp_path: Path, name: str):
    write_align_folder(tmp_path / "train", {"1": "Train one."})
    write_good_shards(tmp_path / "shards", 1, 2)
    storage = str(tmp_path / "train") if name == "cc_sbu_align" else f"{tmp_path}/shards/00000.tar"
    section = {"splits": ["train", "val"], "build_info": {"storage": storage}, **VAL_PROCESSORS}
    path = write_config(tmp_path, {name: section})
    with pytest.raises(ConfigError) as err:
        _built(path)
    msg = str(err.value)
    assert str(path) in msg and f"datasets.{name}" in msg and "'val'" in msg
    assert f"datasets.{name}.build_info.split_storage.val" in msg


def test_a_split_without_processors_is_an_error(tmp_path: Path):
    train = write_align_folder(tmp_path / "train", {"1": "Train one."})
    section = {"splits": ["train", "val"], "build_info": {"storage": str(train), "split_storage": {"val": str(train)}}}
    path = write_config(tmp_path, {"cc_sbu_align": section})
    with pytest.raises(
        ConfigError, match=r"split 'val' has no vis_processor.*datasets\.cc_sbu_align\.vis_processor\.val"
    ):
        _built(path)


def test_published_train_only_sections_are_unchanged(tmp_path: Path):
    train = write_align_folder(tmp_path / "train", {"1": "Train one."})
    cfg = Config.load(write_config(tmp_path, {"cc_sbu_align": {"build_info": {"storage": str(train)}}}))
    assert list(cfg.datasets_cfg.cc_sbu_align.splits) == ["train"]
    assert dict(cfg.datasets_cfg.cc_sbu_align.build_info.split_storage) == {}
    assert list(ImageTextPretrainTask().build_datasets(cfg)["cc_sbu_align"]) == ["train"]
