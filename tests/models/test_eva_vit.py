"""The EVA ViT: same function as an independent EVA implementation, pos-embedding interpolation, checkpointing."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from timm.models.eva import Eva
from torch import Tensor, nn

from minigpt4.models.eva_vit import PatchEmbed, convert_weights_to_fp16, create_eva_vit_g, interpolate_pos_embed

DIMS = {"width": 32, "depth": 2, "num_heads": 4, "mlp_dim": 64, "patch_size": 8}


def _vit(img_size: int = 32, **kw) -> nn.Module:
    torch.manual_seed(0)
    vit = create_eva_vit_g(img_size, 0.0, False, "fp32", None, **{**DIMS, **kw})
    with torch.no_grad():  # non-trivial norms and q/v biases
        for name, p in vit.named_parameters():
            if name.endswith(("q_bias", "v_bias")) or "norm" in name:
                p.normal_(0.5, 0.2)
    return vit


def test_matches_timm_eva_without_final_norm():
    ours = _vit()
    ref = Eva(
        img_size=32,
        patch_size=8,
        num_classes=0,
        embed_dim=32,
        depth=2,
        num_heads=4,
        qkv_bias=True,
        mlp_ratio=2.0,
        use_abs_pos_emb=True,
        use_rot_pos_emb=False,
        init_values=None,
        global_pool="token",
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )
    result = ref.load_state_dict(ours.state_dict(), strict=False)
    assert set(result.missing_keys) <= {"norm.weight", "norm.bias"} and not result.unexpected_keys
    ref.norm = nn.Identity()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = ours(x)
        torch.testing.assert_close(out, ref.forward_features(x), rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 1 + 16, 32)  # class token kept


def test_loading_a_checkpoint_of_another_resolution_interpolates_pos_embed(tmp_path):
    small = _vit(32)
    path = tmp_path / "eva_vit_g.pth"
    torch.save(small.state_dict(), path)
    big = create_eva_vit_g(48, 0.0, False, "fp32", str(path), **DIMS)
    assert big.pos_embed.shape == (1, 1 + 36, 32)
    torch.testing.assert_close(big.pos_embed[:, 0], small.pos_embed[:, 0])
    torch.testing.assert_close(big.blocks[1].attn.q_bias, small.blocks[1].attn.q_bias)
    assert interpolate_pos_embed(small.pos_embed, 16) is small.pos_embed


def test_grad_checkpointing_and_drop_path():
    vit = _vit()
    x = torch.randn(2, 3, 32, 32)
    vit.train()
    vit.use_checkpoint = True
    out = vit(x)
    out.sum().backward()
    grad = vit.blocks[0].attn.qkv.weight.grad.clone()
    vit.zero_grad()
    vit.use_checkpoint = False
    torch.testing.assert_close(vit(x), out)
    vit(x).sum().backward()
    torch.testing.assert_close(vit.blocks[0].attn.qkv.weight.grad, grad)

    dropping = create_eva_vit_g(32, 0.5, False, "fp32", None, **DIMS)
    assert isinstance(dropping.blocks[0].drop_path, nn.Identity)  # rate 0 in the first block, as published
    assert dropping.blocks[1].drop_path.drop_prob == 0.5


def test_stochastic_depth_is_timms():
    from timm.layers import DropPath

    vit = create_eva_vit_g(32, 0.5, False, "fp32", None, **DIMS)
    assert type(vit.blocks[1].drop_path) is DropPath
    vit.train()
    x = torch.randn(64, 5, 32)
    kept = vit.blocks[1].drop_path(x)
    dropped = (kept == 0).flatten(1).all(dim=1)
    assert 0 < int(dropped.sum()) < 64  # whole samples dropped, the others scaled by 1 / keep
    torch.testing.assert_close(kept[~dropped], x[~dropped] / 0.5)
    vit.eval()
    assert vit.blocks[1].drop_path(x) is x


def test_init_draws_from_torchs_trunc_normal():
    """The tiny world's towers start from this draw: timm's trunc_normal_ would give other numbers from one seed."""
    vit = create_eva_vit_g(32, 0.0, False, "fp32", None, **DIMS)
    torch.manual_seed(0)
    vit.init_weights()  # pos_embed is drawn first
    torch.manual_seed(0)
    expected = nn.init.trunc_normal_(torch.zeros_like(vit.pos_embed), std=0.02)
    torch.testing.assert_close(vit.pos_embed.detach(), expected, rtol=0, atol=0)


def test_patch_embed_takes_square_or_rectangular_sizes():
    vit = create_eva_vit_g(32, 0.0, False, "fp32", None, **DIMS)
    assert vit.patch_embed.img_size == (32, 32) and vit.patch_embed.patch_size == (8, 8)
    assert vit.patch_embed.num_patches == 16
    rect = PatchEmbed((32, 48), (8, 16), embed_dim=32)
    assert rect.num_patches == 4 * 3
    assert rect(torch.randn(1, 3, 32, 48)).shape == (1, 12, 32)
    with pytest.raises(ValueError, match="expected 32x32 images"):
        vit(torch.randn(1, 3, 48, 48))


#: fp16 vs fp32 outputs of the 2-block ViT, relative to the output's scale: fp16 rounds to 2**-11 ~ 4.9e-4 of a
#: value; the input cast, each block's ~6 rounded products (qkv, scores, softmax, attention, proj, fc1, fc2) and
#: its two residual sums stay within ~20 roundings ~ 1e-2 (measured: 7.8e-4). A forward that dropped a parameter
#: in the casts (q/v bias, pos_embed, a norm) would be off by O(1); the dtype layout is checked separately.
FP16_TOL = 1e-2


def _fp16_vs_fp32(device: str, autocast: bool) -> tuple[Tensor, Tensor]:
    ref = _vit()
    half = _vit()
    half.load_state_dict(ref.state_dict())
    convert_weights_to_fp16(half)
    ref, half = ref.to(device), half.to(device)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        expected = ref(x)  # fp32, outside autocast
        with torch.autocast(device, dtype=torch.float16, enabled=autocast):
            return half(x), expected


@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "fp16_autocast"])
def test_fp16_vit_on_cpu_matches_fp32(autocast):
    """The published ``vit_precision: fp16`` ViT runs on a CPU, alone and under fp16 autocast (run.amp)."""
    out, ref = _fp16_vs_fp32("cpu", autocast)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < FP16_TOL, f"fp16 vs fp32: max error {err:.2e} of the output scale"
    assert err > 0  # the fp16 model really computed in fp16


def test_fp16_conversion_keeps_the_published_dtypes_on_cpu():
    vit = create_eva_vit_g(32, 0.0, False, "fp16", None, **DIMS)
    dtypes = {name: p.dtype for name, p in vit.state_dict().items()}
    fp32 = {n for n in dtypes if n in ("cls_token", "pos_embed") or n.endswith(("q_bias", "v_bias")) or "norm" in n}
    assert fp32 and all(dtypes[n] == torch.float32 for n in fp32)
    assert all(dtypes[n] == torch.float16 for n in set(dtypes) - fp32)  # every conv / linear weight and bias
    assert dtypes["patch_embed.proj.weight"] == dtypes["blocks.0.mlp.fc1.bias"] == torch.float16


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="checks the CUDA fp16 kernels under torch.autocast('cuda'), which only a GPU has; "
    "the same comparison runs on the CPU in test_fp16_vit_on_cpu_matches_fp32",
)
def test_fp16_vit_under_cuda_autocast_matches_fp32():
    out, ref = _fp16_vs_fp32("cuda", autocast=True)
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() / ref.abs().max() < FP16_TOL
