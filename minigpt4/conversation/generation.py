"""How answers are decoded: one :class:`GenerationConfig` with one set of defaults, read by ``Chat``, the CLIs, the
demo and the tiny evaluation; and the narrow silencing of two warnings that every generation would print.

The defaults are the published MiniGPT-4 v1 demo's (its ``Chat.answer``): sampling with ``top_p=0.9`` and
``temperature=1.0``, one beam, ``repetition_penalty=1.0``, at most 300 new tokens in a context of 2000.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Decoding options of an answer (each field is also a command-line flag of the chat entry points).

    Args:
        max_new_tokens: most tokens an answer may have.
        num_beams: beam search width (1: no beam search).
        min_length: ``generate``'s ``min_length``.
        top_p: nucleus sampling mass (sampling only).
        repetition_penalty: > 1 discourages repeated tokens (1.0: off, as published; it applies to the answer's
            own tokens only, since generation starts from embeddings).
        length_penalty: beam search length penalty.
        temperature: sampling temperature (sampling only).
        max_length: context + new tokens; the oldest context is dropped beyond it.
        do_sample: sample (True, published) or greedy / beam search (False).
    """

    max_new_tokens: int = dataclasses.field(default=300, metadata={"help": "most tokens an answer may have"})
    num_beams: int = dataclasses.field(default=1, metadata={"help": "beam search width (1: none)"})
    min_length: int = dataclasses.field(default=1, metadata={"help": "generate's min_length"})
    top_p: float = dataclasses.field(default=0.9, metadata={"help": "nucleus sampling mass (sampling only)"})
    repetition_penalty: float = dataclasses.field(
        default=1.0, metadata={"help": "> 1 discourages repeated tokens (1.0: off, as the published demo)"}
    )
    length_penalty: float = dataclasses.field(default=1.0, metadata={"help": "beam search length penalty"})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "sampling temperature (sampling only)"})
    max_length: int = dataclasses.field(
        default=2000, metadata={"help": "context + new tokens; the oldest context is dropped beyond it"}
    )
    do_sample: bool = dataclasses.field(default=True, metadata={"help": "sample (else greedy / beam search)"})

    def __post_init__(self) -> None:
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "num_beams": self.num_beams >= 1,
            "min_length": self.min_length >= 0,
            "top_p": 0 < self.top_p <= 1,
            "repetition_penalty": self.repetition_penalty > 0,
            "temperature": self.temperature > 0,
            "max_length": self.max_length >= 1,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise ValueError("generation: out of range: " + ", ".join(f"{n}={getattr(self, n)!r}" for n in wrong))
        if self.max_new_tokens >= self.max_length:
            raise ValueError(
                f"generation: max_new_tokens ({self.max_new_tokens}) must be smaller than max_length "
                f"({self.max_length})"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def updated(self, **options: Any) -> tuple[GenerationConfig, dict[str, Any]]:
        """This config with the options that name one of its fields replaced, and the other options (left for
        ``generate``, e.g. ``logits_processor`` or ``min_new_tokens``)."""
        names = self.names()
        own = {k: v for k, v in options.items() if k in names}
        rest = {k: v for k, v in options.items() if k not in names}
        return (dataclasses.replace(self, **own) if own else self), rest

    def generate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``generate`` (``max_length`` is the context budget, applied before)."""
        kwargs = {n: getattr(self, n) for n in self.names() if n != "max_length"}
        if not self.do_sample:  # greedy or beam search: the sampling knobs would only raise warnings
            kwargs.pop("temperature")
            kwargs.pop("top_p")
        return kwargs


GREEDY = GenerationConfig(do_sample=False)
"""Greedy decoding, otherwise the published defaults: what batch captioning and evaluation start from, so their
answers do not depend on a random draw."""


# ----------------------------------------------------------------------------------------------------------
# expected warnings
# ----------------------------------------------------------------------------------------------------------

EXPECTED_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # generation starts from embeddings, so the penalty cannot see the prompt's ids (known and intended)
    (r"Passing `repetition_penalty` with `inputs_embeds`", UserWarning),
    # the cached context is passed as past_key_values, the name every supported transformers version accepts
    (r"`past_key_values` is deprecated", FutureWarning),
)
EXPECTED_LOG_PREFIX = "`past_key_values`/`cache_params` are deprecated"
"""The same deprecation as transformers also logs it (``transformers.utils.generic``)."""
EXPECTED_LOGGER = "transformers.utils.generic"


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(EXPECTED_LOG_PREFIX)


_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_entries: list[Any] = []
_log_filter = _DropExpected()


@contextlib.contextmanager
def expected_warnings_silenced() -> Iterator[None]:
    """Silence, while generating, exactly the warnings of :data:`EXPECTED_WARNINGS` (by message and category) and
    the deprecation line transformers logs; every other warning still shows.

    Safe with generations running in several threads at once: the filters stay while any of them runs.
    """
    global _quiet_users
    with _quiet_lock:
        if _quiet_users == 0:
            for message, category in EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
                _quiet_entries.append(warnings.filters[0])
            logging.getLogger(EXPECTED_LOGGER).addFilter(_log_filter)
        _quiet_users += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_users -= 1
            if _quiet_users == 0:
                for entry in _quiet_entries:
                    if entry in warnings.filters:
                        warnings.filters.remove(entry)
                _quiet_entries.clear()
                logging.getLogger(EXPECTED_LOGGER).removeFilter(_log_filter)
