"""The published eval configs and the choice of chat template and device."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from minigpt4.cli.common import add_model_args, resolve_device
from minigpt4.common.config import Config, ConfigError
from minigpt4.conversation.conversation import CONV_VISION_LLama2, CONV_VISION_Qwen2, CONV_VISION_Vicuna0, template_for

REPO = Path(__file__).resolve().parents[2]
PATHS = ["model.ckpt=m.pth", "model.llama_model=llm", "model.vit_path=vit.pth", "model.q_former_model=qf.pth"]


@pytest.mark.parametrize(
    "name, model_type, template, end_sym, conv",
    [
        ("minigpt4_eval.yaml", "pretrain_vicuna0", "###Human: {} ###Assistant: ", "###", CONV_VISION_Vicuna0),
        ("minigpt4_llama2_eval.yaml", "pretrain_llama2", "[INST] {} [/INST] ", "</s>", CONV_VISION_LLama2),
        (
            "minigpt4_qwen2_eval.yaml",
            "pretrain_qwen2",
            "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
            "<|im_end|>",
            CONV_VISION_Qwen2,
        ),
    ],
)
def test_published_eval_config(name, model_type, template, end_sym, conv):
    path = REPO / "eval_configs" / name
    with pytest.raises(ConfigError, match="is not set"):
        Config.load(path)  # the required paths are ??? (no machine paths)
    cfg = Config.load(path, PATHS)
    model = cfg.model_cfg
    assert (model.arch, model.model_type, model.max_txt_len) == ("mini_gpt4", model_type, 160)
    assert (model.prompt_template, model.end_sym, model.low_resource) == (template, end_sym, True)
    assert model.ckpt == "m.pth"
    assert dict(cfg.preprocess_cfg.vis_processor.eval)["name"] == "blip2_image_eval"
    assert cfg.preprocess_cfg.vis_processor.eval.image_size == 224
    assert cfg.run_cfg.task == "image_text_pretrain"
    assert template_for(model) is conv


def test_device_choice():
    parser = add_model_args(argparse.ArgumentParser())
    base = ["--cfg-path", "x.yaml"]
    assert resolve_device(parser.parse_args([*base, "--gpu-id", "-1"])) == torch.device("cpu")
    assert resolve_device(parser.parse_args([*base, "--device", "cpu"])) == torch.device("cpu")
    expected = torch.device("cuda:1") if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device(parser.parse_args([*base, "--gpu-id", "1"])) == expected
