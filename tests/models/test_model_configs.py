"""The packaged model YAMLs validate against the schema, and a config built from them builds the model."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from minigpt4.common.config import Config, ConfigError
from minigpt4.models import MiniGPT4
from tests.models.builders import TINY_QFORMER, TINY_VIT


def _write(tmp_path, model: dict) -> str:
    path = tmp_path / "cfg.yaml"
    OmegaConf.save(OmegaConf.create({"model": model, "run": {"device": "cpu"}}), path)
    return str(path)


@pytest.mark.parametrize("model_type", ["pretrain_vicuna0", "pretrain_llama2"])
def test_full_size_defaults_require_local_paths(tmp_path, model_type):
    with pytest.raises(ConfigError, match=r"model\.(vit_path|llama_model|q_former_model)"):
        Config.load(_write(tmp_path, {"arch": "mini_gpt4", "model_type": model_type}))


def test_published_vicuna0_defaults(tmp_path):
    paths = {"vit_path": "a.pth", "q_former_model": "b.pth", "llama_model": "c"}
    cfg = Config.load(_write(tmp_path, {"arch": "minigpt4", **paths})).model_cfg
    assert cfg.model_type == "pretrain_vicuna0"
    assert (cfg.image_size, cfg.num_query_token, cfg.max_txt_len, cfg.end_sym) == (224, 32, 32, "\n")
    assert (cfg.vit_precision, cfg.freeze_vit, cfg.freeze_qformer, cfg.has_qformer) == ("fp16", True, True, True)
    assert (cfg.vit_width, cfg.vit_depth, cfg.qformer_hidden_size) == (1408, 39, 768)


def test_llama2_defaults_have_no_qformer(tmp_path):
    cfg = Config.load(
        _write(tmp_path, {"arch": "mini_gpt4", "model_type": "pretrain_llama2", "vit_path": "a", "llama_model": "c"})
    ).model_cfg
    assert cfg.has_qformer is False and cfg.q_former_model is None


def test_unknown_model_key_fails(tmp_path):
    with pytest.raises(ConfigError, match="vit_widht"):
        Config.load(_write(tmp_path, {"arch": "mini_gpt4", "model_type": "tiny", "vit_widht": 3}))


@pytest.mark.parametrize("model_type", ["tiny", "tiny_llama2"])
def test_tiny_config_builds_through_config(tmp_path, tiny_assets, model_type):
    sizes = {**TINY_VIT, **(TINY_QFORMER if model_type == "tiny" else {})}
    model = {"arch": "mini_gpt4", "model_type": model_type, **sizes}
    model.update({k: tiny_assets[k] for k in ("vit_path", "llama_model")})
    if model_type == "tiny":
        model["q_former_model"] = tiny_assets["q_former_model"]
    config = Config.load(_write(tmp_path, model))
    assert config.preprocess_cfg.vis_processor.train.name == "blip2_image_train"
    built = MiniGPT4.from_config(config.model_cfg)
    assert (built.Qformer is not None) == (model_type == "tiny")
