"""The pre-flight check (``python -m minigpt4.cli.check``) through its entry point: tiny weights made wrong in one
way each give the right FAIL line and a non-zero exit code; correct tiny weights give no FAIL; train.py and
demo.py stop on a FAIL before building anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

import demo
import train
from minigpt4.cli.check import main
from minigpt4.common.config import ConfigError
from minigpt4.common.preflight import OK, run_checks
from tests.models.builders import SENTENCES, TINY_LLAMA, TINY_QFORMER
from tests.runners import helpers as h

HIDDEN = TINY_LLAMA["hidden_size"]
PROJ_IN = TINY_QFORMER["qformer_hidden_size"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = h.build_world(tmp_path_factory.mktemp("check_world"))
    ckpt = world["root"] / "ckpt.pth"
    torch.save(
        {"model": {"llama_proj.weight": torch.zeros(HIDDEN, PROJ_IN), "llama_proj.bias": torch.zeros(HIDDEN)}}, ckpt
    )
    world["ckpt"] = str(ckpt)
    return world


def write_cfg(world, tmp_path, model=None, datasets=None, run=None):
    model_section = h.model_section(world, **{"ckpt": world["ckpt"], **(model or {})})
    datasets = h.align_datasets(world) if datasets is None else datasets
    return str(
        h.write_config(tmp_path / "cfg.yaml", model_section, datasets, h.run_section(tmp_path / "out", **(run or {})))
    )


def check(cfg_path, capsys, *extra):
    code = main(["--cfg-path", cfg_path, *extra])
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    return code, out, fails


def assert_one_fail(code, out, fails, *words):
    assert code == 1, out
    assert len(fails) == 1, out
    for word in words:
        assert word in fails[0], out


def test_correct_tiny_weights_give_no_fail(world, tmp_path, capsys):
    datasets = {**h.align_datasets(world), **h.stage1_datasets(world)}
    code, out, fails = check(write_cfg(world, tmp_path, datasets=datasets), capsys)
    assert code == 0 and not fails, out
    for name in ("model.vit_path", "model.q_former_model", "model.llama_model", "model.ckpt", "family", "memory"):
        assert any(line.startswith("OK") and f" {name} " in line for line in out.splitlines()), (name, out)
    for name in ("laion", "cc_sbu", "cc_sbu_align"):
        assert f"OK    datasets.{name} " in out, out


def test_tiny_world_gives_all_ok(tiny_world, tmp_path, capsys):
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    cfg = os.path.join(root, "train_configs", "minigpt4_tiny_stage2_finetune.yaml")
    options = [
        f"model.vit_path={tiny_world}/eva_vit_tiny.pth",
        f"model.q_former_model={tiny_world}/qformer_tiny.pth",
        f"model.llama_model={tiny_world}/llama",
        "model.ckpt=null",
        f"datasets.cc_sbu_align.build_info.storage={tiny_world}/cc_sbu_align",
    ]
    code, out, _ = check(cfg, capsys, "--options", *options)
    assert code == 0, out
    assert all(line.startswith(OK) for line in out.splitlines()[:-1]), out


def test_vit_with_a_wrong_shape(world, tmp_path, capsys):
    state = torch.load(world["assets"]["vit_path"], weights_only=True)
    state["blocks.0.mlp.fc1.weight"] = torch.zeros(10, state["blocks.0.mlp.fc1.weight"].shape[1])
    torch.save(state, tmp_path / "vit.pth")
    code, out, fails = check(write_cfg(world, tmp_path, {"vit_path": str(tmp_path / "vit.pth")}), capsys)
    assert_one_fail(code, out, fails, "model.vit_path", "blocks.0.mlp.fc1.weight", "[10, 32]", "[64, 32]", "vit_width")


def test_vit_with_missing_keys(world, tmp_path, capsys):
    state = torch.load(world["assets"]["vit_path"], weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("blocks.1.")}
    torch.save(state, tmp_path / "vit.pth")
    code, out, fails = check(write_cfg(world, tmp_path, {"vit_path": str(tmp_path / "vit.pth")}), capsys)
    assert_one_fail(code, out, fails, "model.vit_path", "missing", "blocks.1.", "eva_vit_g.pth")


def test_qformer_checkpoint_without_query_tokens(world, tmp_path, capsys):
    ckpt = torch.load(world["assets"]["q_former_model"], weights_only=True)
    del ckpt["model"]["query_tokens"]
    torch.save(ckpt, tmp_path / "blip2.pth")
    code, out, fails = check(write_cfg(world, tmp_path, {"q_former_model": str(tmp_path / "blip2.pth")}), capsys)
    assert_one_fail(code, out, fails, "model.q_former_model", "has no query_tokens", "BLIP-2")


def write_llm(folder, vocab_size, tokenizer_from=None):
    """A tiny LLaMA folder whose embedding has ``vocab_size`` rows, with the tokenizer of ``tokenizer_from``
    (else one trained here without the ``$$`` piece)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    os.makedirs(folder, exist_ok=True)
    if tokenizer_from:
        shutil.copy(os.path.join(tokenizer_from, "tokenizer.model"), folder)
    else:
        import sentencepiece as spm

        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(SENTENCES * 4), model_prefix=os.path.join(folder, "tokenizer"),
            vocab_size=400,
            character_coverage=1.0, model_type="bpe", byte_fallback=True, hard_vocab_limit=False, minloglevel=2,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        )  # fmt: skip
        if vocab_size is None:
            vocab_size = spm.SentencePieceProcessor(model_file=os.path.join(folder, "tokenizer.model")).vocab_size()
    config = LlamaConfig(
        vocab_size=vocab_size, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, **TINY_LLAMA
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


def test_llm_with_fewer_embedding_rows_than_tokenizer_tokens(world, tmp_path, capsys):
    import sentencepiece as spm

    source = world["assets"]["llama_model"]
    size = spm.SentencePieceProcessor(model_file=os.path.join(source, "tokenizer.model")).vocab_size()
    llm = write_llm(tmp_path / "llm", size - 1, tokenizer_from=source)
    code, out, fails = check(write_cfg(world, tmp_path, {"llama_model": llm}), capsys)
    assert_one_fail(code, out, fails, "model.llama_model", f"{size} tokens", f"only {size - 1} rows")


def test_tokenizer_without_the_pad_piece(world, tmp_path, capsys):
    llm = write_llm(tmp_path / "llm", None)
    code, out, fails = check(write_cfg(world, tmp_path, {"llama_model": llm}), capsys)
    assert_one_fail(code, out, fails, "model.llama_model", "no '$$' piece")


@pytest.fixture(scope="module")
def qwen2_llm(tmp_path_factory):
    """A tiny Qwen2 folder (byte-level BPE tokenizer without a bos token, Qwen2ForCausalLM) as wide as the
    test world's LLaMA, so the world's checkpoint fits it; trained for two steps only: the check reads shapes."""
    from minigpt4.tiny import language

    out = str(tmp_path_factory.mktemp("qwen2") / "qwen2")
    shape = language.LMConfig(
        hidden_size=HIDDEN, intermediate_size=96, num_layers=1, num_heads=4, steps=2, batch_size=2, warmup=1
    )
    language.build_llm("qwen2", out, 40, 300, shape, seed=0)
    return out


def qwen2_model(llm):
    return {"llama_model": llm, "model_type": "tiny_qwen2", "llm_family": "qwen2", "conv_template": "qwen2"}


def test_qwen2_folder_passes_with_its_own_tokenizer(world, qwen2_llm, tmp_path, capsys):
    code, out, fails = check(write_cfg(world, tmp_path, qwen2_model(qwen2_llm)), capsys)
    assert code == 0 and not fails, out
    line = next(x for x in out.splitlines() if x.split()[:2] == ["OK", "model.llama_model"])
    assert "qwen2" in line and "pad '<|endoftext|>'" in line, line
    assert "'$$'" not in out, out  # the LLaMA pad piece is not asked of a family that pads with its own


def test_qwen2_folder_under_the_llama_family(world, qwen2_llm, tmp_path, capsys):
    model = {**qwen2_model(qwen2_llm), "llm_family": "llama"}
    code, out, fails = check(write_cfg(world, tmp_path, model), capsys)
    assert code == 1, out
    assert any("holds a 'qwen2' model, but model.llm_family 'llama'" in line for line in fails), out


def test_ckpt_whose_llama_proj_is_for_another_llm_width(world, tmp_path, capsys):
    wide = {"llama_proj.weight": torch.zeros(5120, PROJ_IN), "llama_proj.bias": torch.zeros(5120)}
    torch.save(
        {"model": wide, "config": {"model": {"llama_model": "vicuna-13b", "model_type": "pretrain_vicuna0"}}},
        tmp_path / "c.pth",
    )
    code, out, fails = check(write_cfg(world, tmp_path, {"ckpt": str(tmp_path / "c.pth")}), capsys)
    assert_one_fail(code, out, fails, "model.ckpt", "maps to 5120 (a 13B LLM)", "vicuna-13b", f"hidden size {HIDDEN}")


def llama2_with_vicuna_template(tmp_path):
    """A LLaMA-2-variant model section (its checkpoint fits) given the Vicuna v0 prompt template."""
    fitting = {"llama_proj.weight": torch.zeros(HIDDEN, 4 * 32), "llama_proj.bias": torch.zeros(HIDDEN)}
    torch.save({"model": fitting}, tmp_path / "llama2_ckpt.pth")
    template = "###Human: {} ###Assistant: "
    return {
        "model_type": "tiny_llama2",
        "prompt_template": template,
        "end_sym": "</s>",
        "ckpt": str(tmp_path / "llama2_ckpt.pth"),
    }


def test_llama2_model_type_with_the_vicuna_template(world, tmp_path, capsys):
    code, out, fails = check(write_cfg(world, tmp_path, llama2_with_vicuna_template(tmp_path)), capsys)
    assert_one_fail(code, out, fails, "model.prompt_template", "llama2", "vicuna0 template")


def test_shard_pattern_that_matches_nothing(world, tmp_path, capsys):
    datasets = h.stage1_datasets(world)
    datasets["laion"]["build_info"]["storage"] = str(tmp_path / "none" / "{00000..00003}.tar")
    code, out, fails = check(write_cfg(world, tmp_path, datasets=datasets), capsys)
    assert_one_fail(code, out, fails, "datasets.laion.build_info.storage", "no shard file matches", "cfg.yaml")


def test_align_folder_with_a_missing_image(world, tmp_path, capsys):
    folder = tmp_path / "align"
    shutil.copytree(world["align"], folder)
    os.remove(folder / "image" / "3.jpg")
    datasets = h.align_datasets({"align": str(folder)})
    code, out, fails = check(write_cfg(world, tmp_path, datasets=datasets), capsys)
    assert_one_fail(code, out, fails, "datasets.cc_sbu_align", "1 of 16 listed images are missing", "3.jpg")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA reports")
def test_8bit_without_cuda_says_what_is_missing(world, tmp_path, capsys):
    code, out, fails = check(write_cfg(world, tmp_path, {"low_resource": True}), capsys)
    assert_one_fail(code, out, fails, "model.low_resource", "CUDA GPU", "model.low_resource: false")


def test_failing_check_exits_non_zero_in_a_subprocess(world, tmp_path):
    cfg = write_cfg(world, tmp_path, llama2_with_vicuna_template(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "minigpt4.cli.check", "--cfg-path", cfg, "--no-data"],
        cwd=h.REPO_ROOT, env=h.subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  model.prompt_template" in result.stdout, result.stdout


def test_train_and_demo_stop_on_a_fail_before_building(world, tmp_path):
    cfg = write_cfg(world, tmp_path, llama2_with_vicuna_template(tmp_path))
    with pytest.raises(ConfigError, match="pre-flight check .* failed:\nFAIL +model.prompt_template +'###Human"):
        train.main(["--cfg-path", cfg])
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="FAIL +model.prompt_template"):
        demo.main(["--cfg-path", cfg, "--gpu-id", "-1"])


def test_memory_estimate_names_batch_and_size(world, tmp_path):
    from minigpt4.common.config import Config

    report = run_checks(Config.load(write_cfg(world, tmp_path, run={"batch_size_train": 12})), data=False)
    memory = next(f for f in report.findings if f.check == "memory")
    assert (
        "stage 1 at batch 12" in memory.message and "GB per device" in memory.message and "you have" in memory.message
    )
