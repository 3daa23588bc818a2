"""Processor base class: a callable built from one validated config section."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class NoParams:
    """Schema of a processor without parameters."""


class BaseProcessor:
    """Identity processor; subclasses set ``config_schema`` and implement ``__call__``.

    ``from_config(cfg)`` validates ``cfg`` (a ``{name, **params}`` section, ``name`` ignored) against
    ``config_schema`` and passes the params as keyword arguments to ``__init__``: the schema is the one place
    where defaults live.
    """

    config_schema: ClassVar[type] = NoParams

    def __call__(self, item: Any) -> Any:
        return item

    @classmethod
    def params_from_config(cls, cfg: DictConfig | dict[str, Any] | None) -> dict[str, Any]:
        """The schema-validated params of ``cfg`` as a plain dict (``name`` dropped)."""
        node = OmegaConf.create({} if cfg is None else cfg)
        node = OmegaConf.masked_copy(node, [k for k in node if k != "name"])
        merged = OmegaConf.merge(OmegaConf.structured(cls.config_schema), node)
        return OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)  # type: ignore[return-value]

    @classmethod
    def from_config(cls, cfg: DictConfig | dict[str, Any] | None = None) -> BaseProcessor:
        return cls(**cls.params_from_config(cfg))
