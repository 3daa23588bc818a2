"""Resumable, rank-sharded JSONL output: each rank appends to its own part file, rank 0 merges them.

Used by batch captioning (``minigpt4.cli.caption``) and ``evaluate.py``. A record counts as done once its line is
complete in the output or in any part file, so an interrupted job (whatever its number of ranks) resumes without
redoing or duplicating records; a torn last line (an interrupted write) is skipped and redone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

logger = logging.getLogger(__name__)


def part_path(out: Path, rank: int) -> Path:
    """Rank ``rank``'s part file of ``out``: ``name.rank<r>.jsonl`` beside it."""
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def part_files(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{out.stem}.rank*{out.suffix}"))


def read_records(paths: Iterable[Path]) -> Iterator[dict]:
    """Records (with an ``answer``) of JSONL files; a torn line (an interrupted write) is skipped."""
    for path in paths:
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("%s: skipping an incomplete line", path)
                    continue
                if isinstance(record, dict) and record.get("answer") is not None:
                    yield record


def done_records(out: Path) -> Iterator[dict]:
    """Every finished record of ``out`` and its part files."""
    return read_records([out, *part_files(out)])


def open_for_append(path: Path) -> TextIO:
    """``path`` opened for appending records; a torn last line (no newline: an interrupted write) is ended first,
    so that the next record starts on a line of its own."""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
        if torn:
            with open(path, "a", encoding="utf-8") as f:
                f.write("\n")
    return open(path, "a", encoding="utf-8")


def append_in_batches(
    path: Path,
    items: Sequence[Any],
    batch_size: int,
    answer: Callable[[Sequence[Any]], list[dict]],
    desc: str,
    show_progress: bool,
    durable: bool = False,
) -> int:
    """Append ``answer(batch)``'s records for ``items``, batch by batch, to ``path`` (opened with
    :func:`open_for_append`), flushed after each batch (and fsynced when ``durable``), with a tqdm bar.

    Returns how many records were written."""
    written = 0
    with open_for_append(path) as f, tqdm(total=len(items), disable=not show_progress, desc=desc, unit="item") as bar:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            for record in answer(batch):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
            f.flush()
            if durable:
                os.fsync(f.fileno())
            bar.update(len(batch))
    return written


def merge_parts(out: Path, key: Callable[[dict], Hashable], order: Mapping[Hashable, int]) -> int:
    """Write every finished record (output + part files) once into ``out``, sorted by ``order[key(record)]``
    (unknown keys last), and remove the part files. Returns the number of records."""
    parts = part_files(out)
    records = {key(r): r for r in read_records([out, *parts])}
    ordered = sorted(records.values(), key=lambda r: order.get(key(r), len(order)))
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in ordered:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    for part in parts:
        part.unlink()
    return len(ordered)
