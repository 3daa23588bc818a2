from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from minigpt4.common.config import Config, ConfigError
from minigpt4.common.registry import registry
from minigpt4.datasets.builders import CCSBUAlignBuilder, CCSBUBuilder, ImageTextWebDatasetBuilder, LaionBuilder
from minigpt4.datasets.data_utils import build_train_iterator
from minigpt4.datasets.datasets.cc_sbu_align_dataset import CCSBUAlignDataset
from minigpt4.datasets.datasets.webdataset_source import ImageTextWebDataset
from minigpt4.processors.blip_processors import Blip2ImageTrainProcessor, BlipCaptionProcessor
from tests.datasets.shard_utils import write_align_folder, write_good_shards


def test_registered_builders_share_one_webdataset_class():
    assert registry.get_builder_class("laion") is LaionBuilder
    assert registry.get_builder_class("cc_sbu") is CCSBUBuilder
    assert registry.get_builder_class("cc_sbu_align") is CCSBUAlignBuilder
    assert issubclass(LaionBuilder, ImageTextWebDatasetBuilder) and issubclass(CCSBUBuilder, ImageTextWebDatasetBuilder)
    assert set(vars(LaionBuilder)) - {"__module__", "__doc__", "__firstlineno__", "__static_attributes__"} == {
        "name",
        "DATASET_CONFIG_DICT",
    }


@pytest.mark.parametrize("cls", [LaionBuilder, CCSBUBuilder, CCSBUAlignBuilder])
def test_default_yaml_has_required_storage(cls):
    cfg = cls.default_config()
    assert OmegaConf.is_missing(cfg.build_info, "storage")
    assert cls.default_config_path().endswith(".yaml")


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
        built = registry.get_builder_class(name)(section).build_datasets()
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
    builder = LaionBuilder({"build_info": {"storage": f"{tmp_path}/none/{{0..3}}.tar"}})
    with pytest.raises(FileNotFoundError, match="none"):
        builder.build_datasets()
