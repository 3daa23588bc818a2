"""The curation YAML is validated like every other config: file and key in every message."""

from __future__ import annotations

import pytest

from minigpt4.cli import curate
from minigpt4.common.config import ConfigError
from minigpt4.curation.config import load_curate_config


def _write(tmp_path, text):
    path = tmp_path / "curate.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("store: s.jsonl\ngenerate:\n  batchsize: 4\n", "unknown key 'generate.batchsize'"),
        ("store: s.jsonl\ngenerate:\n  batch_size: 0\n", "generate.batch_size: 0 is out of range (must be > 0)"),
        ("store: s.jsonl\nfilter:\n  min_similarity: 1.5\n", "filter.min_similarity: 1.5 is out of range"),
        ("store: s.jsonl\nrefine:\n  backend: gpt\n", "refine.backend: unknown value 'gpt'; known: rule, openai"),
        ("store: s.jsonl\ngenerate:\n  min_tokens: many\n", "generate.min_tokens"),
        ("store: s.jsonl\nimages:\n  folder: a\n  shards: b.tar\n", "give either images.folder or images.shards"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=str(path)) as err:
        load_curate_config(path)
    assert message in str(err.value)


def test_options_override_and_are_named_when_wrong(tmp_path):
    path = _write(tmp_path, "store: s.jsonl\n")
    cfg = load_curate_config(path, ["generate.min_tokens=40", "refine.openai.concurrency=2"])
    assert cfg.generate.min_tokens == 40 and cfg.refine.openai.concurrency == 2
    assert (
        cfg.generate.prompt
        == "Describe this image in detail. Give as many details as possible. Say everything you see."
    )
    assert cfg.generate.min_tokens == 40 and load_curate_config(path).generate.min_tokens == 80  # the paper's
    with pytest.raises(ConfigError, match=r"--options: generate.max_new_tokens: -1 is out of range"):
        load_curate_config(path, ["generate.max_new_tokens=-1"])


def test_a_step_needing_an_unset_value_says_which(tmp_path):
    path = _write(tmp_path, "store: ???\n")
    with pytest.raises(ConfigError, match=r"required value 'store' is not set"):
        curate.main(["status", "--cfg-path", str(path)])
    path = _write(tmp_path, f"store: {tmp_path}/s.jsonl\n")
    with pytest.raises(ConfigError, match=r"required value 'export.folder' is not set"):
        curate.main(["export", "--cfg-path", str(path)])
