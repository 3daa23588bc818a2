"""The generation flags of the chat entry points come from ``GenerationConfig`` (one set of defaults)."""

from __future__ import annotations

import dataclasses

import pytest

from minigpt4.cli import caption, web
from minigpt4.cli import chat as chat_cli
from minigpt4.cli.common import generation_options
from minigpt4.conversation.generation import GenerationConfig
from minigpt4.tiny import evaluate


def test_every_config_field_is_a_flag_with_its_default():
    base = ["--cfg-path", "x.yaml", "--image", "a.png"]
    assert generation_options(chat_cli.parse_args(base)) == GenerationConfig()
    assert generation_options(web.parse_args(["--cfg-path", "x.yaml"])) == GenerationConfig()
    # captioning and the evaluation decode greedily; every other default is the demo's
    captioning = generation_options(caption.parse_args(["--cfg-path", "x", "--images", "d", "--out", "o"]))
    assert captioning == GenerationConfig(do_sample=False)
    assert generation_options(evaluate.parse_args(["--cfg-path", "x"])) == evaluate.EVAL_GENERATION
    values = {
        "max_new_tokens": 7,
        "num_beams": 2,
        "min_length": 3,
        "top_p": 0.5,
        "repetition_penalty": 1.05,
        "length_penalty": 0.5,
        "temperature": 0.7,
        "max_length": 100,
    }
    flags = [x for name, value in values.items() for x in ("--" + name.replace("_", "-"), str(value))]
    config = generation_options(chat_cli.parse_args([*base, *flags, "--greedy"]))
    assert dataclasses.asdict(config) == {**values, "do_sample": False}
    assert generation_options(
        caption.parse_args(["--cfg-path", "x", "--images", "d", "--out", "o", "--sample"])
    ).do_sample


def test_out_of_range_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        chat_cli.parse_args(["--cfg-path", "x.yaml", "--image", "a.png", "--top-p", "2"])
    assert exit_info.value.code == 2
    assert "top_p=2.0" in capsys.readouterr().err
