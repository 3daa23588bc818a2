"""Logging set up once per process, and a rank-aware progress bar.

``setup_logger(output_dir, rank)`` configures the ``minigpt4`` logger (and the root logger's handlers it owns):
rank 0 logs INFO to the console, other ranks WARNING and above; with an ``output_dir`` every rank writes
``log_rank{r}.txt`` and rank 0 also ``log.txt``. Calling it again replaces the handlers it installed before.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s [rank %(rank)s] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_HANDLER_TAG = "_minigpt4_handler"


class _RankFilter(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return True


def _tagged(handler: logging.Handler, rank: int, level: int) -> logging.Handler:
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    handler.addFilter(_RankFilter(rank))
    setattr(handler, _HANDLER_TAG, True)
    return handler


def setup_logger(
    output_dir: str | os.PathLike[str] | None = None, rank: int | None = None, level: int = logging.INFO
) -> None:
    """Configure logging for this process (idempotent: a second call replaces the first call's handlers).

    Args:
        output_dir: where to write ``log_rank{rank}.txt`` (every rank) and ``log.txt`` (rank 0); None: console only.
        rank: this process's rank; None reads it from the process group (0 when not distributed).
        level: the console level on rank 0 (other ranks use WARNING); files always get ``level``.
    """
    if rank is None:
        from minigpt4.common.dist_utils import get_rank

        rank = get_rank()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [
        _tagged(logging.StreamHandler(sys.stderr), rank, level if rank == 0 else max(level, logging.WARNING))
    ]
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        handlers.append(_tagged(logging.FileHandler(os.path.join(output_dir, f"log_rank{rank}.txt")), rank, level))
        if rank == 0:
            handlers.append(_tagged(logging.FileHandler(os.path.join(output_dir, "log.txt")), rank, level))
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def progress(
    iterable: Iterable[T] | None = None, total: int | None = None, desc: str | None = None, disable: bool | None = None
) -> Any:
    """A tqdm progress bar on rank 0 of an interactive terminal; elsewhere the iterable itself.

    Args:
        iterable: what to wrap (None: a manual bar, use ``.update(n)``).
        total: number of items.
        desc: label.
        disable: force off (True) or on (False); None: on only on rank 0 with a TTY on stderr.
    """
    from tqdm.auto import tqdm

    from minigpt4.common.dist_utils import is_main_process

    if disable is None:
        disable = not (is_main_process() and sys.stderr.isatty())
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True)
