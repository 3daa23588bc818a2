"""``run.parallelism: fsdp``: the frozen towers sharded across ranks with FSDP2 (``fully_shard``).

Each rank keeps 1/world_size of the frozen parameters of the modules named in ``run.fsdp_modules`` (default: the
LLM). A module is sharded in pieces that are called on their own: every element of a ``ModuleList`` (decoder
layers, ViT blocks), and every other child that holds parameters (embeddings, the LM head, norms); its own
parameters, if any, stay whole. A piece is all-gathered right before its forward (and again in the backward,
which runs through the frozen LLM to ``llama_proj``) and freed after it, under a :class:`MixedPrecisionPolicy`
that computes in the dtype the weights are stored in (``model.torch_dtype`` / ``model.vit_precision``).

The trainable parameters (``llama_proj``) are not sharded: every rank holds them whole, and
:func:`all_reduce_gradients` averages their gradients before each optimizer step, as DDP does; checkpoints
therefore keep the published format without any gathering. Trainable parameters inside a sharded module (LoRA)
are refused.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)

PARALLELISMS = ("ddp", "fsdp")


def _pieces(module: nn.Module) -> list[nn.Module]:
    """The parts of ``module`` that are sharded on their own (see the module docstring), innermost first."""
    found: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, nn.ModuleList):
            found.extend(child)
        elif any(True for _ in child.parameters(recurse=False)):
            found.append(child)
        else:
            found.extend(_pieces(child))
    return found


def shard_frozen_modules(model: nn.Module, names: list[str]) -> None:
    """``fully_shard`` the pieces of each module ``model.<name>`` (all ranks; parameters broadcast from rank 0 first).

    Raises:
        ValueError: a name that is not a submodule, or a sharded module with trainable parameters.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    for tensor in model.state_dict().values():  # the same start on every rank, as DDP does when wrapping
        dist.broadcast(tensor, src=0)
    for name in names:
        module = getattr(model, name, None)
        if not isinstance(module, nn.Module):
            raise ValueError(f"run.fsdp_modules: {type(model).__name__} has no module {name!r}")
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        if trainable:
            raise ValueError(
                f"run.fsdp_modules: {name} has trainable parameters ({trainable[:3]}...); FSDP here shards frozen "
                "modules only (LoRA adapters: use run.parallelism=ddp)"
            )
        pieces = _pieces(module)
        for piece in pieces:
            dtypes = {p.dtype for p in piece.parameters()}
            policy = MixedPrecisionPolicy(param_dtype=dtypes.pop() if len(dtypes) == 1 else None)
            fully_shard(piece, mp_policy=policy, reshard_after_forward=True)
        logger.info("fsdp: %s sharded in %d pieces over %d ranks", name, len(pieces), dist.get_world_size())


def local_bytes(tensor: torch.Tensor) -> int:
    """Bytes this rank holds of ``tensor`` (its shard, for an FSDP2 DTensor)."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def frozen_param_bytes(model: nn.Module) -> int:
    """Bytes of frozen parameters resident on this rank."""
    return sum(local_bytes(p) for p in model.parameters() if not p.requires_grad)


def all_reduce_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """Average the gradients of the replicated trainable ``params`` over ranks (one flat all-reduce)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def check_parallelism(run_cfg: Any, model_cfg: Any) -> None:
    """Raises ValueError naming the key for a ``run.parallelism`` this model cannot use."""
    if run_cfg.parallelism not in PARALLELISMS:
        raise ValueError(f"run.parallelism: expected one of {', '.join(PARALLELISMS)}, got {run_cfg.parallelism!r}")
    if run_cfg.parallelism == "fsdp" and model_cfg.get("low_resource", False):
        raise ValueError("run.parallelism=fsdp cannot shard an 8-bit (model.low_resource) LLM")
    if run_cfg.parallelism == "fsdp" and (run_cfg.valid_splits or run_cfg.evaluate or run_cfg.valid_generation):
        # the validators give ranks unequal shares (a stream to rank 0 alone, answers of different lengths); a
        # sharded forward needs every rank in every forward
        raise ValueError(
            "run.parallelism=fsdp does not validate yet (run.valid_splits / run.valid_generation / run.evaluate): "
            "the ranks' uneven evaluation shares would stall the sharded forward; evaluate the checkpoint with "
            "run.parallelism=ddp or evaluate.py"
        )
