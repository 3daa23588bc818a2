"""Logging set up once per process, running metric averages, and a rank-aware progress bar.

``setup_logger(output_dir, rank)`` configures the ``minigpt4`` logger (and the root logger's handlers it owns):
rank 0 logs INFO to the console, other ranks WARNING and above; with an ``output_dir`` every rank writes
``log_rank{r}.txt`` and rank 0 also ``log.txt``. Calling it again replaces the handlers it installed before.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch

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


class SmoothedValue:
    """A series of values with a window: ``median``/``avg`` over the window, ``global_avg`` over everything.

    Args:
        window_size: how many recent values the windowed statistics use.
        fmt: ``str.format`` template over ``median``, ``avg``, ``global_avg``, ``max``, ``value``.
    """

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4f} ({global_avg:.4f})") -> None:
        self.deque: deque[float] = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    def update(self, value: float, n: int = 1) -> None:
        self.deque.append(float(value))
        self.count += n
        self.total += float(value) * n

    def synchronize_between_processes(self) -> None:
        """Sum ``count`` and ``total`` over ranks (the window stays local)."""
        from minigpt4.common.dist_utils import is_dist_avail_and_initialized

        if not is_dist_avail_and_initialized():
            return
        t = torch.tensor([self.count, self.total], dtype=torch.float64)
        if torch.distributed.get_backend() == "nccl":
            t = t.cuda()
        torch.distributed.all_reduce(t)
        self.count, self.total = int(t[0].item()), float(t[1].item())

    @property
    def median(self) -> float:
        return float(torch.tensor(list(self.deque)).median().item()) if self.deque else 0.0

    @property
    def avg(self) -> float:
        return sum(self.deque) / len(self.deque) if self.deque else 0.0

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def max(self) -> float:
        return max(self.deque) if self.deque else 0.0

    @property
    def value(self) -> float:
        return self.deque[-1] if self.deque else 0.0

    def __str__(self) -> str:
        return self.fmt.format(
            median=self.median, avg=self.avg, global_avg=self.global_avg, max=self.max, value=self.value
        )


class MetricLogger:
    """Named :class:`SmoothedValue` meters plus ``log_every``, an iteration helper that logs progress and ETA.

    Args:
        delimiter: between meters in log lines.
        log: the logger progress lines go to.
    """

    def __init__(self, delimiter: str = "  ", log: logging.Logger | None = None) -> None:
        self.meters: defaultdict[str, SmoothedValue] = defaultdict(SmoothedValue)
        self.delimiter = delimiter
        self.log = log or logger

    def update(self, **kwargs: float | torch.Tensor) -> None:
        for name, value in kwargs.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                value = value.item()
            self.meters[name].update(float(value))

    def add_meter(self, name: str, meter: SmoothedValue) -> None:
        self.meters[name] = meter

    def __getattr__(self, name: str) -> SmoothedValue:
        meters = self.__dict__.get("meters", {})
        if name in meters:
            return meters[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or meter {name!r}")

    def __str__(self) -> str:
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def global_avg(self) -> str:
        return self.delimiter.join(f"{name}: {meter.global_avg:.4f}" for name, meter in self.meters.items())

    def averages(self) -> dict[str, float]:
        """``{meter: global average}``, e.g. for an epoch summary."""
        return {name: meter.global_avg for name, meter in self.meters.items()}

    def synchronize_between_processes(self) -> None:
        for meter in self.meters.values():
            meter.synchronize_between_processes()

    def log_every(
        self, iterable: Iterable[T], print_freq: int, header: str = "", total: int | None = None
    ) -> Iterator[T]:
        """Yield from ``iterable``, logging meters, ETA, time per iteration every ``print_freq`` items.

        Args:
            iterable: what to iterate; may be endless if ``total`` is given (iteration stops after ``total``).
            print_freq: log every this many items (and at the last one).
            header: prefix of each line (e.g. ``Train: epoch [0]``).
            total: the number of items (default ``len(iterable)``).
        """
        if total is None:
            total = len(iterable)  # type: ignore[arg-type]
        iter_time, data_time = SmoothedValue(fmt="{avg:.4f}"), SmoothedValue(fmt="{avg:.4f}")
        width = len(str(total))
        start = end = time.time()
        it = iter(iterable)
        for i in range(total):
            try:
                obj = next(it)
            except StopIteration:
                break
            data_time.update(time.time() - end)
            yield obj
            iter_time.update(time.time() - end)
            if i % max(print_freq, 1) == 0 or i == total - 1:
                eta = datetime.timedelta(seconds=int(iter_time.global_avg * (total - i - 1)))
                self.log.info(
                    "%s [%*d/%d] eta: %s  %s  time: %s  data: %s",
                    header,
                    width,
                    i,
                    total,
                    eta,
                    self,
                    iter_time,
                    data_time,
                )
            end = time.time()
        elapsed = datetime.timedelta(seconds=int(time.time() - start))
        self.log.info("%s total time: %s (%.4f s / it)", header, elapsed, (time.time() - start) / max(total, 1))


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
