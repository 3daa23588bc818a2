"""Low-memory construction: a frozen tower built on the meta device and filled from its weight file.

Built the ordinary way, EVA ViT-G (1B parameters) is first initialised with random fp32 weights (4 GB, and tens of
seconds of random-number generation), then overwritten by the file, then cast to fp16: the peak holds the random
fp32 copy, the file's copy and the cast. Here the module is built on the meta device (shapes and dtypes, no
memory), its target dtypes set there, and each tensor of the file is put in place already in that dtype
(``load_state_dict(assign=True)``): no random initialisation, one copy of the weights. The file is read with
``torch.load(mmap=True)``, so it is never held whole in memory next to the model: each tensor is copied out of
the mapping into its final dtype, and the mapping is released when the load ends.

A file that lacks some of the module's tensors cannot fill it: :func:`covers` says so beforehand, and the callers
then build the module the ordinary way (random initialisation, then a non-strict load), as published.
``model.low_memory_build: False`` always takes the ordinary way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def read_weights(path: str | os.PathLike[str], weights_only: bool = True) -> Any:
    """``torch.load`` of ``path`` on the CPU, memory-mapped when the file's format allows it (the zip format every
    torch since 1.6 writes); an older file is read whole."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err) and "zip" not in str(err):
            raise
        logger.info("%s cannot be memory-mapped (%s): reading it whole", path, err)
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def covers(names: Iterable[str], state: Mapping[str, Any]) -> list[str]:
    """The names of ``names`` that ``state`` lacks (empty: the file can fill the module)."""
    return [name for name in names if name not in state]


def meta_tensors(module: nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``module`` still on the meta device."""
    named = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    return [name for name, t in named if t.is_meta]


def in_dtypes_of(module: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The entries of ``state`` that ``module`` has, each a copy in the dtype of the module's own tensor. Always a
    copy: a tensor left in a memory-mapped file would keep the whole file mapped (and its pages counted in the
    process's memory) for as long as the model lives."""
    own = module.state_dict(keep_vars=True)
    return {k: v.to(own[k].dtype, copy=True) for k, v in state.items() if k in own}


def assign_weights(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Fill ``module`` (built on the meta device, target dtypes set) from ``state``: every tensor of the module
    must be there. Parameters keep their ``requires_grad``.

    Raises:
        ValueError: a shape differs, or a tensor of the module is still on the meta device afterwards (naming them).
    """
    own = module.state_dict(keep_vars=True)
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if mismatched:
        raise ValueError(f"{source}: parameter shapes do not match the model ({'; '.join(mismatched)})")
    module.load_state_dict(in_dtypes_of(module, state), strict=False, assign=True)
    require_filled(module, source)


def require_filled(module: nn.Module, source: str) -> None:
    """Raise ValueError naming the tensors of ``module`` still on the meta device (``source`` did not fill them)."""
    left = meta_tensors(module)
    if left:
        raise ValueError(f"{source}: has no values for {', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")
