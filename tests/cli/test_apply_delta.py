"""``python -m minigpt4.cli.apply_delta``: a tiny LLaMA base and a tiny Vicuna-v0-style delta (one more token row,
its own tokenizer with ``[PAD]``), as safetensors shards or ``pytorch_model-*.bin`` shards, merge to exactly
base + delta; the result loads with transformers and as ``model.llama_model``; every bad input fails clearly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from minigpt4.cli.apply_delta import DeltaError, apply_delta, main
from tests.models.builders import TINY_LLAMA, build_assets, tiny_model_cfg, write_tokenizer

PAD = "[PAD]"
INV_FREQ = "model.layers.0.self_attn.rotary_emb.inv_freq"
VOCAB_TENSORS = ("model.embed_tokens.weight", "lm_head.weight")


# ----------------------------------------------------------------------------------------------------------
# fixtures: base and delta folders in the published layouts
# ----------------------------------------------------------------------------------------------------------


def _llama_config(vocab: int, **overrides):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, **{**TINY_LLAMA, **overrides}
    )


def _random_state(config, seed: int) -> dict[str, torch.Tensor]:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    for p in model.parameters():  # norms start at exactly 1: make every tensor random
        torch.nn.init.normal_(p, std=0.5)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_bin_shards(state: dict[str, torch.Tensor], folder: Path, n_shards: int = 3) -> None:
    """``pytorch_model-0000k-of-0000n.bin`` shards and ``pytorch_model.bin.index.json``, as older transformers wrote."""
    names = list(state)
    per = -(-len(names) // n_shards)
    weight_map = {}
    for i in range(n_shards):
        file = f"pytorch_model-{i + 1:05d}-of-{n_shards:05d}.bin"
        part = {k: state[k] for k in names[i * per : (i + 1) * per]}
        torch.save(part, folder / file)
        weight_map.update(dict.fromkeys(part, file))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_model(folder: Path, config, state: dict[str, torch.Tensor], fmt: str) -> Path:
    """Save ``state`` with ``config`` as sharded safetensors (save_pretrained) or as .bin shards."""
    from transformers import LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        model = LlamaForCausalLM(config)
        model.load_state_dict(state)
        model.save_pretrained(folder, max_shard_size="60KB")
        assert (folder / "model.safetensors.index.json").is_file()
    else:
        config.save_pretrained(folder)
        save_bin_shards(state, folder)
    return folder


def write_base(root: Path, fmt: str, seed: int = 0, inv_freq: bool = False, **overrides) -> Path:
    """A LLaMA folder: tokenizer.model (no pad token) and random weights of its vocabulary size."""
    import sentencepiece as spm

    folder = root / f"llama-{fmt}"
    write_tokenizer(str(folder))
    vocab = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")).vocab_size()
    config = _llama_config(vocab, **overrides)
    state = _random_state(config, seed)
    if inv_freq:  # early conversions saved the rotary buffer
        state[INV_FREQ] = torch.rand(TINY_LLAMA["hidden_size"] // TINY_LLAMA["num_attention_heads"] // 2)
    return write_model(folder, config, state, fmt)


def write_delta(root: Path, base: Path, fmt: str, seed: int = 1, edit=None, **overrides) -> Path:
    """A delta made to the v0 conventions: the base tokenizer plus ``[PAD]`` (one more token row), random weights."""
    from transformers import LlamaTokenizer

    folder = root / f"delta-{fmt}"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = LlamaTokenizer.from_pretrained(str(base))
    assert tokenizer.add_special_tokens({"pad_token": PAD}) == 1
    tokenizer.save_pretrained(str(folder))
    shutil.copyfile(base / "tokenizer.model", folder / "tokenizer.model")
    config = _llama_config(len(tokenizer), **overrides)
    config.pad_token_id = tokenizer.pad_token_id
    state = _random_state(config, seed)
    if edit is not None:
        edit(state)
    write_model(folder, config, state, fmt)
    return folder


def read_folder(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model folder, read in full (the reference side of the comparisons)."""
    out: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    for file in sorted(folder.glob("pytorch_model*.bin")):
        out.update(torch.load(file, weights_only=True))
    return out


def expected_merge(base: dict[str, torch.Tensor], delta: dict[str, torch.Tensor], dtype: torch.dtype):
    """The published procedure on whole tensors: cast both, pad the base's vocabulary rows with zeros, add."""
    out = {}
    for name, d in delta.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        b = base[name].to(dtype)
        if b.shape != d.shape:
            b = torch.cat([b, torch.zeros(d.shape[0] - b.shape[0], *b.shape[1:], dtype=dtype)])
        out[name] = b + d.to(dtype)
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    """``(root, base, delta)`` per layout, built once: sharded safetensors base with a .bin delta (the published
    delta's layout), and a .bin base (with an inv_freq buffer) with a sharded safetensors delta."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    root = tmp_path_factory.mktemp("apply_delta")
    pairs = {}
    for base_fmt, delta_fmt in (("safetensors", "bin"), ("bin", "safetensors")):
        sub = root / f"{base_fmt}+{delta_fmt}"
        base = write_base(sub, base_fmt, inv_freq=base_fmt == "bin")
        pairs[base_fmt] = (sub, base, write_delta(sub, base, delta_fmt))
    return pairs


# ----------------------------------------------------------------------------------------------------------
# the merge
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base_fmt", ["safetensors", "bin"])
def test_merge_is_exactly_base_plus_delta(pair, base_fmt: str, tmp_path: Path):
    _, base, delta = pair[base_fmt]
    target = tmp_path / "vicuna"
    assert main(["--base", str(base), "--delta", str(delta), "--target", str(target), "--max-shard-size", "50KB"]) == 0

    index = json.loads((target / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((target / s).is_file() for s in shards)
    assert not list(target.glob("*.bin")) and not (target.parent / ".vicuna.partial").exists()

    base_t, delta_t, merged = read_folder(base), read_folder(delta), read_folder(target)
    want = expected_merge(base_t, delta_t, torch.float16)
    assert set(merged) == set(want) == set(index["weight_map"]) and INV_FREQ not in merged
    for name, tensor in want.items():
        assert merged[name].dtype == torch.float16, name
        assert torch.equal(merged[name], tensor), name
    rows = base_t["model.embed_tokens.weight"].shape[0]
    for name in VOCAB_TENSORS:  # the extra [PAD] row is the delta's own row
        assert merged[name].shape[0] == rows + 1
        assert torch.equal(merged[name][rows:], delta_t[name][rows:].half())
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in merged.values())


def test_target_takes_the_delta_config_and_tokenizer(pair, tmp_path: Path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    _, base, delta = pair["safetensors"]
    target = apply_delta(base, delta, tmp_path / "vicuna", progress=False)

    config = json.loads((target / "config.json").read_text())
    delta_config = json.loads((delta / "config.json").read_text())
    dtype_key = "dtype" if "dtype" in delta_config else "torch_dtype"
    assert config[dtype_key] == "float16"
    assert {k: v for k, v in config.items() if k != dtype_key} == {
        k: v for k, v in delta_config.items() if k != dtype_key
    }
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
        assert (target / name).read_bytes() == (delta / name).read_bytes(), name
    tokenizer = AutoTokenizer.from_pretrained(str(target))
    assert len(tokenizer) == config["vocab_size"] and tokenizer.convert_tokens_to_ids(PAD) == len(tokenizer) - 1

    model = LlamaForCausalLM.from_pretrained(str(target), dtype=torch.float16)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    merged = read_folder(target)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, merged[name]), name


def test_float32_merge(pair, tmp_path: Path):
    _, base, delta = pair["bin"]
    target = apply_delta(base, delta, tmp_path / "vicuna", dtype="float32", progress=False)
    merged = read_folder(target)
    want = expected_merge(read_folder(base), read_folder(delta), torch.float32)
    assert set(merged) == set(want)
    for name, tensor in want.items():
        assert merged[name].dtype == torch.float32 and torch.equal(merged[name], tensor), name


def test_merged_model_loads_as_llama_model(pair, tmp_path: Path):
    from minigpt4.models import MiniGPT4

    _, base, delta = pair["safetensors"]
    target = apply_delta(base, delta, tmp_path / "vicuna", progress=False)
    assets = build_assets(str(tmp_path / "assets"))
    model = MiniGPT4.from_config(tiny_model_cfg(assets, llama_model=str(target)))
    merged = read_folder(target)
    llm = model.llama_model
    assert torch.equal(llm.get_input_embeddings().weight, merged["model.embed_tokens.weight"].float())
    assert torch.equal(llm.lm_head.weight, merged["lm_head.weight"].float())
    assert model.llama_tokenizer.convert_tokens_to_ids(PAD) == merged["lm_head.weight"].shape[0] - 1
    image = torch.randn(2, 3, 32, 32)
    out = model({"image": image, "answer": ["a red circle", "a blue square"]})
    assert torch.isfinite(out["loss"])


def test_existing_target_needs_overwrite(pair, tmp_path: Path):
    _, base, delta = pair["safetensors"]
    target = tmp_path / "vicuna"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(DeltaError, match="already exists.*--overwrite"):
        apply_delta(base, delta, target, progress=False)
    assert (target / "old.txt").is_file()
    apply_delta(base, delta, target, overwrite=True, progress=False)
    assert not (target / "old.txt").exists() and (target / "model.safetensors.index.json").is_file()


@pytest.mark.parametrize("where", ["base", "inside delta", "above both"])
def test_target_never_replaces_an_input(pair, where: str):
    _, base, delta = pair["safetensors"]
    target, which = {
        "base": (base, "base"),
        "inside delta": (delta / "x", "delta"),
        "above both": (base.parent, "base"),
    }[where]
    with pytest.raises(DeltaError, match=f"would overwrite the {which}"):
        apply_delta(base, delta, target, overwrite=True, progress=False)
    assert (base / "config.json").is_file() and (delta / "config.json").is_file()


# ----------------------------------------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------------------------------------


def test_missing_folder(pair, tmp_path: Path):
    _, base, delta = pair["safetensors"]
    with pytest.raises(DeltaError, match=r"base folder .*nowhere does not exist"):
        apply_delta(tmp_path / "nowhere", delta, tmp_path / "out", progress=False)
    with pytest.raises(DeltaError, match=r"delta folder .*nowhere does not exist"):
        apply_delta(base, tmp_path / "nowhere", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_tensor_missing_on_one_side(pair, tmp_path: Path):
    _, base, _ = pair["safetensors"]
    gone = "model.layers.1.mlp.up_proj.weight"
    delta = write_delta(tmp_path, base, "bin", edit=lambda state: state.pop(gone))
    with pytest.raises(DeltaError, match=rf"only in the base .*: {gone}"):
        apply_delta(base, delta, tmp_path / "out", progress=False)

    extra = "model.layers.0.mlp.extra.weight"
    delta = write_delta(tmp_path / "x", base, "bin", edit=lambda state: state.update({extra: torch.zeros(2)}))
    with pytest.raises(DeltaError, match=rf"only in the delta .*: {extra}"):
        apply_delta(base, delta, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_shape_mismatch_names_tensor_and_shapes(pair, tmp_path: Path):
    _, base, _ = pair["safetensors"]
    name = "model.layers.0.self_attn.q_proj.weight"
    delta = write_delta(tmp_path, base, "bin", edit=lambda state: state.update({name: torch.zeros(50, 48)}))
    with pytest.raises(DeltaError, match=rf"tensor {name}: base shape \[48, 48\] .* vs delta shape \[50, 48\]"):
        apply_delta(base, delta, tmp_path / "out", progress=False)


def test_delta_with_fewer_token_rows_is_refused(pair, tmp_path: Path):
    _, base, _ = pair["safetensors"]
    delta = tmp_path / "delta"
    config = _llama_config(300)  # fewer rows than the base's 400
    write_model(delta, config, _random_state(config, 1), "bin")
    shutil.copyfile(base / "tokenizer.model", delta / "tokenizer.model")
    with pytest.raises(
        DeltaError, match=r"model.embed_tokens.weight: base shape \[400, 48\] .* delta shape \[300, 48\]"
    ):
        apply_delta(base, delta, tmp_path / "out", progress=False)


def test_base_that_is_not_llama(pair, tmp_path: Path):
    _, base, delta = pair["safetensors"]
    other = tmp_path / "gpt"
    shutil.copytree(base, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt_neox"}))
    with pytest.raises(DeltaError, match=r"base .*config.json: model_type is 'gpt_neox', not 'llama'"):
        apply_delta(other, delta, tmp_path / "out", progress=False)

    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "params.json").write_text("{}")
    torch.save({}, meta / "consolidated.00.pth")
    with pytest.raises(DeltaError, match="original LLaMA checkpoint .*convert_llama_weights_to_hf"):
        apply_delta(meta, delta, tmp_path / "out", progress=False)


def test_base_of_another_size(pair, tmp_path: Path):
    _, _, delta = pair["safetensors"]
    base = write_base(tmp_path, "safetensors", hidden_size=64)
    with pytest.raises(DeltaError, match=r"different models \(hidden_size 64 vs 48"):
        apply_delta(base, delta, tmp_path / "out", progress=False)


def test_git_lfs_pointer(pair, tmp_path: Path):
    _, base, delta = pair["bin"]
    clone = tmp_path / "delta"
    shutil.copytree(delta, clone)
    shard = sorted(clone.glob("*.safetensors"))[0]
    shard.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    with pytest.raises(DeltaError, match=rf"{shard.name} is a git-lfs pointer.*git lfs pull"):
        apply_delta(base, clone, tmp_path / "out", progress=False)


def test_command_line_error_exit(pair, tmp_path: Path):
    _, _, delta = pair["safetensors"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "minigpt4.cli.apply_delta", "--base", str(tmp_path / "none"), "--delta", str(delta)]
    proc = subprocess.run([*cmd, "--target", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert f"apply_delta: base folder {tmp_path / 'none'} does not exist" in proc.stderr
