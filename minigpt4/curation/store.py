"""The curation store: one JSONL file, one record per image, only ever appended to.

Each line is a partial record ``{"id": ..., ...}``. Reading merges the lines of an id in file order, mapping
into mapping (a later value wins), so a later line extends or supersedes an earlier one. A record looks like::

    {"id": "2", "image": {"path": ...} | {"shard": ..., "member": ...},
     "texts": {"generate:ab12...": {"step": "generate", "text": ..., <provenance>},
               "refine:cd34...": {"step": "refine", "input": "generate:ab12...", "text": ..., ...}},
     "errors": {"generate:ab12...": "cannot identify image file ..."},
     "latest": {"generate": "generate:ab12...", "refine": "refine:cd34...", "filter": "filter:ef56..."},
     "filters": {"filter:ef56...": {"text": "refine:cd34...", "passed": false, "reasons": [...]}},
     "review": {"decision": "accept" | "edit" | "reject", "text": ..., "version": ..., "by": ...}}

Version keys are ``step:<hash of the step's settings>``: a step rerun with other settings adds a version and
points ``latest`` at it, keeping the earlier ones. A step writes a line only once its work for that record is
done, and flushes it, so after a ``kill -9`` a rerun finds what is done and does the rest. A torn last line (the
write the kill interrupted) is ignored with a warning, and cut off before the next append.

Under torchrun, rank ``r`` of a sharded step appends to ``<store>.rank<r>`` (its own file); rank 0 appends
those lines to the store and removes them when every rank is done (and at the start of the next run, for the
parts an interrupted run left).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from minigpt4.common.config import InputFileError

logger = logging.getLogger(__name__)

TIME_KEY = "time"


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` merged into ``base`` in place (mappings recursively, anything else replaced); returns ``base``."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = json.loads(json.dumps(value)) if isinstance(value, dict | list) else value
    return base


def now() -> float:
    return round(time.time(), 3)


def part_path(store: Path, rank: int) -> Path:
    return store.with_name(f"{store.name}.rank{rank}")


def part_files(store: Path) -> list[Path]:
    return sorted(p for p in store.parent.glob(f"{store.name}.rank*") if p.suffix[5:].isdigit())


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one file; a torn last line is skipped with a warning, a bad line elsewhere is an error."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if i == last:  # no newline after it: an interrupted write
                logger.warning("%s:%d: ignoring an incomplete last line (an interrupted write)", path, i + 1)
                continue
            raise InputFileError(f"{path}:{i + 1}: not a JSON line: {err}") from err
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise InputFileError(f"{path}:{i + 1}: expected a JSON object with a string 'id'")
        yield record


class Store:
    """The records of a store file (and its part files), and appending to it.

    Args:
        path: the JSONL file (created with its folder on the first append).
        write_to: the file this process appends to (default ``path``; a rank's part file under torchrun).
    """

    def __init__(self, path: str | os.PathLike[str], write_to: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.write_to = Path(write_to) if write_to is not None else self.path
        self.records: dict[str, dict[str, Any]] = {}
        self._file: Any = None
        self.reload()

    # reading ----------------------------------------------------------------------------------------------
    def reload(self) -> None:
        self.records = {}
        for path in [self.path, *part_files(self.path)]:
            if path.is_file():
                for line in _lines(path):
                    self._apply(line)

    def _apply(self, line: dict[str, Any]) -> None:
        record = self.records.setdefault(line["id"], {"id": line["id"]})
        deep_merge(record, line)

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self.records.get(record_id)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)

    def latest(self, record_id: str, step: str) -> str | None:
        """The version key the last run of ``step`` made for this record, or None."""
        record = self.records.get(record_id) or {}
        return (record.get("latest") or {}).get(step)

    # writing ----------------------------------------------------------------------------------------------
    def _open(self) -> Any:
        if self._file is None:
            self.write_to.parent.mkdir(parents=True, exist_ok=True)
            _cut_torn_tail(self.write_to)
            self._file = open(self.write_to, "a", encoding="utf-8")
        return self._file

    def append(self, lines: Iterable[dict[str, Any]]) -> None:
        """Append partial records, flushed to disk, and apply them to :attr:`records`."""
        f = self._open()
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
            self._apply(line)
        f.flush()
        os.fsync(f.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def merge_parts(self) -> int:
        """Append every part file's complete lines to the store, then remove the parts; how many lines moved."""
        self.close()
        moved = 0
        parts = part_files(self.path)
        if not parts:
            return 0
        _cut_torn_tail(self.path)
        with open(self.path, "a", encoding="utf-8") as out:
            for part in parts:
                for line in _lines(part):
                    out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
                    moved += 1
            out.flush()
            os.fsync(out.fileno())
        for part in parts:
            part.unlink()
        self.reload()
        return moved


def _cut_torn_tail(path: Path) -> None:
    """Cut an unterminated last line off ``path`` (so that the next line starts on a line of its own)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        logger.warning("%s: cutting off an incomplete last line (%d bytes)", path, len(data) - keep)
        f.truncate(keep)


def without_times(value: Any) -> Any:
    """A copy of a record with every ``time`` entry removed (to compare runs)."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if k != TIME_KEY}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value
