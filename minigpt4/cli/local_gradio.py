"""Gradio as our web pages use it: nothing leaves the machine unless the user asks for it.

- :func:`import_gradio` turns Gradio's usage analytics (reports to Gradio's servers, and its check for a newer
  version) off before Gradio is imported: it sets ``GRADIO_ANALYTICS_ENABLED=False`` unless the environment already
  sets that variable (``GRADIO_ANALYTICS_ENABLED=True`` restores Gradio's default). Every page built with
  ``gr.Blocks(..., analytics_enabled=analytics_enabled())`` follows the same setting.
- :func:`launch` serves a page and shows our own hint for a public link (the ``--share`` option) in place of
  Gradio's, which speaks of ``share=True`` in ``launch()``. A public link is the one thing that contacts another
  machine, and only when asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

ANALYTICS_ENV = "GRADIO_ANALYTICS_ENABLED"
#: the line Gradio prints at launch without a public link; replaced by :data:`SHARE_HINT`
GRADIO_SHARE_HINT = "set `share=True` in `launch()`"
SHARE_HINT = "To create a public link, start again with --share."


def import_gradio() -> ModuleType:
    """The ``gradio`` module, with usage analytics off unless ``GRADIO_ANALYTICS_ENABLED`` is already set."""
    os.environ.setdefault(ANALYTICS_ENV, "False")
    import gradio

    return gradio


def analytics_enabled() -> bool:
    """Whether Gradio may send usage analytics: only when the user set ``GRADIO_ANALYTICS_ENABLED=True``."""
    return os.environ.get(ANALYTICS_ENV, "False") == "True"


class _WithoutLine:
    """A text stream that forwards everything to ``target`` except the writes holding ``needle`` (and the newline
    ``print`` writes right after them)."""

    def __init__(self, target: Any, needle: str) -> None:
        self.target = target
        self.needle = needle
        self.dropped = False

    def write(self, text: str) -> int:
        drop = self.needle in text or (self.dropped and text == "\n")
        self.dropped = self.needle in text
        if drop:
            return len(text)
        return self.target.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


@contextlib.contextmanager
def _without_gradio_share_hint() -> Iterator[None]:
    stream = _WithoutLine(sys.stdout, GRADIO_SHARE_HINT)
    with contextlib.redirect_stdout(stream):  # type: ignore[type-var]
        yield


def launch(demo: Any, share: bool = False, **kwargs: Any) -> None:
    """``demo.launch(share=share, **kwargs)``, then serve until interrupted.

    Gradio's hint about ``share=True`` is left out and, without ``share``, :data:`SHARE_HINT` is logged instead.
    """
    with _without_gradio_share_hint():
        demo.launch(share=share, prevent_thread_lock=True, **kwargs)
    if not share:
        logger.info(SHARE_HINT)
    demo.block_thread()
