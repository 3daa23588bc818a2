"""The base of every model: the ``from_config`` contract, checkpoint loading, freezing helpers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from minigpt4.common.registry import registry
from minigpt4.common.utils import get_repo_root, resolve_local_file

logger = logging.getLogger(__name__)


def resolve_model_path(path: str | os.PathLike[str] | None, key: str) -> str:
    """An existing local file/folder for the model config value ``key`` (e.g. ``model.vit_path``).

    A relative path is tried against the current directory, then the repository root (as data paths are). A URL
    or a missing file raises FileNotFoundError naming ``key`` and every distinct place looked at, plus where to
    download it when the name is a published checkpoint's (:mod:`minigpt4.common.checkpoints`).
    """
    return resolve_local_file(path, key, search_dirs=(get_repo_root(),))


def _disabled_train(self: nn.Module, mode: bool = True) -> nn.Module:
    """Replacement for ``train()`` on frozen modules: they stay in eval mode."""
    return self


def freeze(module: nn.Module, eval_mode: bool = True) -> nn.Module:
    """Freeze ``module`` in place: no gradients, eval mode, and ``train()`` keeps it in eval mode.

    ``eval_mode=False`` only turns gradients off (for an LLM that carries LoRA adapters with dropout, or that
    uses gradient checkpointing, which only runs in train mode). Returns the module.
    """
    for param in module.parameters():
        param.requires_grad_(False)
    if not eval_mode:
        return module
    module.eval()
    module.train = _disabled_train.__get__(module)  # type: ignore[method-assign]
    return module


class BaseModel(nn.Module):
    """Base class of registered models.

    Subclasses set ``config_schema`` (a dataclass listing every config key and its default),
    ``PRETRAINED_MODEL_CONFIG_DICT`` (``model_type -> "configs/models/x.yaml"``, relative to the package dir) and
    ``DEFAULT_MODEL_TYPE``, and implement ``from_config(cfg)``.
    """

    config_schema: ClassVar[type]
    PRETRAINED_MODEL_CONFIG_DICT: ClassVar[dict[str, str]] = {}
    DEFAULT_MODEL_TYPE: ClassVar[str | None] = None

    @classmethod
    def default_config_path(cls, model_type: str) -> str:
        """Absolute path of the default YAML of ``model_type``."""
        if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
            known = ", ".join(sorted(cls.PRETRAINED_MODEL_CONFIG_DICT))
            raise KeyError(f"unknown model_type {model_type!r} for {cls.__name__}; known: {known}")
        return os.path.join(registry.get_path("library_root"), cls.PRETRAINED_MODEL_CONFIG_DICT[model_type])

    @classmethod
    def from_config(cls, cfg: Any) -> BaseModel:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The device of the first parameter (CPU for a model without parameters)."""
        for param in self.parameters():
            return param.device
        return torch.device("cpu")

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """What a checkpoint stores: parameters that need gradients plus persistent buffers."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        buffers = set(self._persistent_buffer_names())
        return {k: v for k, v in self.state_dict().items() if k in trainable or k in buffers}

    def _persistent_buffer_names(self) -> Iterator[str]:
        for mod_name, module in self.named_modules():
            for buf_name, buf in module.named_buffers(recurse=False):
                if buf is not None and buf_name not in module._non_persistent_buffers_set:
                    yield f"{mod_name}.{buf_name}" if mod_name else buf_name

    def load_checkpoint(self, path: str | os.PathLike[str], key: str = "model.ckpt") -> tuple[list[str], list[str]]:
        """Load ``ckpt["model"]`` (or a plain state dict) from a local file, non-strictly.

        Returns (missing, unexpected) keys; both are logged. A shape mismatch raises naming both shapes.
        """
        path = resolve_model_path(path, key)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict or a dict with 'model', got {type(state).__name__}")
        return self.load_state_dict_report(state, source=path)

    def load_state_dict_report(
        self, state: dict[str, Tensor], source: str, report_missing: bool = True, assign: bool = False
    ) -> tuple[list[str], list[str]]:
        """Non-strict load with a clear error on shape mismatches and a log of what loaded and what did not.

        ``assign``: put the tensors in place (each in the dtype of the model's own tensor) instead of copying into
        the existing ones: the way to fill modules built on the meta device (:mod:`minigpt4.models.weights`)."""
        own = self.state_dict()
        mismatched = [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        if mismatched:
            raise ValueError(
                f"{source}: parameter shapes do not match the model ({'; '.join(mismatched)}). "
                + self._mismatch_hint(mismatched)
            )
        if assign:
            from minigpt4.models.weights import in_dtypes_of

            state = {**state, **in_dtypes_of(self, state)}
        result = self.load_state_dict(state, strict=False, assign=assign)
        loaded = [k for k in state if k in own]
        logger.info("loaded %d tensors from %s", len(loaded), source)
        unexpected = list(result.unexpected_keys)
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        missing = [k for k in result.missing_keys if k in trainable]
        if missing and report_missing:
            logger.warning("trainable tensors not in %s (kept as initialised): %s", source, ", ".join(missing))
        if unexpected:
            logger.warning("tensors of %s not used by the model: %s", source, ", ".join(unexpected))
        return list(result.missing_keys), unexpected

    def _mismatch_hint(self, mismatched: list[str]) -> str:
        return "The checkpoint was probably trained with a different model size."
