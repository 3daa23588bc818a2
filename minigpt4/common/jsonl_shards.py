"""Resumable, rank-sharded JSONL output: each rank appends to its own part file, rank 0 merges them.

Used by batch captioning (``minigpt4.cli.caption``) and ``evaluate.py``. A record counts as done once its line is
complete in the output or in any part file, so an interrupted job (whatever its number of ranks) resumes without
redoing or duplicating records; a torn last line (an interrupted write) is skipped and redone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TextIO

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
