"""The stage-1 reader as it was before it was rebuilt on the webdataset library, kept for the data bench only.

The pipeline is plain ``tarfile`` streaming, in this order, for each *stream* (one per rank and loader worker):

1. shard list: brace patterns expanded (``/data/laion/{00000..10488}.tar``, several joined by ``::``);
   ``resampled`` streams draw shards at random with replacement forever (seeded by seed, rank, stream), the
   finite mode shuffles the list once per epoch and gives stream ``s`` of ``S`` the shards ``s::S``;
2. tar members grouped by key (the file name up to its first dot) into raw samples ``{ext: bytes}``;
3. a shuffle buffer over raw samples (seeded per stream and epoch);
4. decoding (image to RGB, caption from ``json["caption"]`` or ``txt``) and the processors, with the crop RNG
   seeded per sample.

A sample that cannot be used is skipped and counted per reason (:data:`BAD_REASONS`). Every sample carries a
small meta record (stream id, how many raw samples the stream has consumed, the stream's bad-sample counts) that
:mod:`minigpt4.datasets.data_utils` uses to resume exactly: it restarts each stream and drops the recorded number
of raw samples after step 3, before any image is decoded; shards are then read header by header (the bytes of
the dropped samples are never read).
"""

from __future__ import annotations

import copy
import glob
import io
import json
import logging
import os
import random
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from braceexpand import braceexpand
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from minigpt4.common.utils import get_repo_root
from minigpt4.datasets.datasets.common import (
    FLUSH_KEY,
    META_KEY,
    BadSampleCounter,
    UnreadableImage,
    collate,
    derive_seed,
    open_rgb,
    seeded_torch,
)

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
BAD_REASONS = ("tar_error", "no_image", "image_decode", "no_caption", "processor_error")
MAX_BAD_IN_A_ROW = 10000  # a stream with this many unusable samples in a row is misconfigured
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def expand_shards(storage: str | Sequence[str]) -> list[str]:
    """Expand brace patterns (and globs) into existing shard files.

    Args:
        storage: one pattern, several joined by ``::``, or a list of patterns. A relative pattern is tried
            against the current directory, then the repository root (see :func:`data_search_dirs`).

    Raises:
        FileNotFoundError: a pattern matches no file (the pattern is in the message).
    """
    patterns = storage.split("::") if isinstance(storage, str) else list(storage)
    patterns = [os.path.expanduser(p.strip()) for p in patterns if p and p.strip()]
    if not patterns:
        raise FileNotFoundError("no shard pattern given (build_info.storage is empty)")
    shards: list[str] = []
    for pattern in patterns:
        bases = [""] if os.path.isabs(pattern) else data_search_dirs()
        for base in bases:
            names = list(braceexpand(os.path.join(base, pattern)))
            found = [f for name in names for f in _existing(name)]
            if found:
                break
        if not found:
            where = "" if os.path.isabs(pattern) else f" (relative to {' or '.join(bases)})"
            raise FileNotFoundError(f"no shard file matches {pattern!r}{where}; {len(names)} names expanded")
        missing = len(names) - len(found)
        if missing > 0 and not any(glob.has_magic(n) for n in names):
            logger.warning(
                "%d of %d shards of %r do not exist; using the %d that do", missing, len(names), pattern, len(found)
            )
        shards.extend(found)
    return shards


def data_search_dirs() -> list[str]:
    """Where relative data paths are looked for: the current directory, then the repository root."""
    return list(dict.fromkeys([os.getcwd(), get_repo_root()]))


def _existing(name: str) -> list[str]:
    if glob.has_magic(name):
        return sorted(glob.glob(name))
    return [name] if os.path.isfile(name) else []


def _split_key(name: str) -> tuple[str, str] | None:
    directory, base = os.path.split(name)
    if "." not in base:
        return None
    key, ext = base.split(".", 1)
    return os.path.join(directory, key), ext.lower()


@dataclass(frozen=True)
class MemberRef:
    """Where a member's bytes lie in an uncompressed tar: read on demand (resume skips them unread)."""

    path: str
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise EOFError(f"{self.path}: {self.size} bytes expected at {self.offset}, got {len(data)}")
        return data


def iter_tar_samples(path: str, counter: BadSampleCounter, lazy: bool = False) -> Iterator[dict[str, Any]]:
    """Raw samples ``{"__key__", "__url__", ext: bytes}`` of one tar, members grouped by consecutive key.

    An unreadable shard or member ends the shard and counts one ``tar_error``; the sample being assembled at
    that point is dropped. With ``lazy`` (used to fast-forward on resume) an uncompressed tar is read header by
    header and the values are :class:`MemberRef`; the samples and errors are the same as when reading it whole.
    """
    if lazy:
        try:
            tar = tarfile.open(path, mode="r:")
        except _TAR_ERRORS:
            lazy = False  # compressed or damaged: read it as a stream (same samples, same errors)
        else:
            tar.close()
    current: dict[str, Any] | None = None
    try:
        file_size = os.path.getsize(path)
        with tarfile.open(path, mode="r:" if lazy else "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                split = _split_key(member.name)
                if split is None:
                    continue
                key, ext = split
                if current is not None and current["__key__"] != key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key, "__url__": path}
                if not lazy:
                    current[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
                elif member.offset_data + member.size > file_size:
                    raise tarfile.ReadError("unexpected end of data")
                else:
                    current[ext] = MemberRef(path, member.offset_data, member.size)
    except _TAR_ERRORS as err:
        where = f"{path}" + (f" after {current['__key__']}" if current else "")
        counter.add("tar_error", where, err)
        return
    if current is not None:
        yield current


def shuffle_buffer(items: Iterator[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Yield ``items`` in a locally shuffled order using a buffer of ``size`` (<= 1: unchanged)."""
    if size <= 1:
        yield from items
        return
    buf: list[Any] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            k = rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            yield buf.pop()
    while buf:
        k = rng.randrange(len(buf))
        buf[k], buf[-1] = buf[-1], buf[k]
        yield buf.pop()


@dataclass
class StreamPlan:
    """Where this copy of the dataset sits: set by the train iterator before it makes a DataLoader."""

    rank: int = 0
    world_size: int = 1
    seed: int = 0
    epoch: int = 0
    role_offset: int = 0  # loader worker i plays stream role (i + role_offset) % num_workers
    resume_cursors: list[int] = field(default_factory=list)  # raw samples to drop, per role
    batch_size: int | None = None  # None: yield samples; else collated batches (incomplete last one dropped)


class LegacyImageTextWebDataset(IterableDataset):
    """Endless (``resampled``) or finite stream of ``{"image", "answer"}`` from webdataset shards.

    Args:
        storage: shard pattern(s), see :func:`expand_shards`; checked at construction.
        vis_processor: PIL image -> tensor.
        text_processor: caption -> text.
        resampled: draw shards with replacement forever (stage-1 training) instead of one pass per epoch.
        shuffle_buffer: size of the raw-sample shuffle buffer (<= 1: no shuffling).
        name: the source name used in logs.
    """

    def __init__(
        self,
        storage: str | Sequence[str],
        vis_processor: Callable[[Image.Image], Any],
        text_processor: Callable[[str], str],
        resampled: bool = True,
        shuffle_buffer: int = 1000,
        name: str = "webdataset",
    ) -> None:
        super().__init__()
        self.shards = expand_shards(storage)
        self.vis_processor = vis_processor
        self.text_processor = text_processor
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.name = name
        self.plan = StreamPlan()
        logger.info("%s: %d shards, resampled=%s, shuffle buffer %d", name, len(self.shards), resampled, shuffle_buffer)

    def with_plan(self, plan: StreamPlan) -> LegacyImageTextWebDataset:
        """A shallow copy that streams according to ``plan``."""
        clone = copy.copy(self)
        clone.plan = plan
        return clone

    # streams ---------------------------------------------------------------------------------------------
    def _role(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return (worker + self.plan.role_offset) % workers, workers

    def _shard_sequence(self, stream: int, streams: int) -> Iterator[str]:
        plan = self.plan
        if self.resampled:
            rng = random.Random(derive_seed("shards", plan.seed, stream, streams))
            while True:
                yield rng.choice(self.shards)
        order = list(self.shards)
        random.Random(derive_seed("order", plan.seed, plan.epoch)).shuffle(order)
        if stream == 0 and len(order) < streams:
            logger.warning("%s: %d shards for %d streams: some streams get no data", self.name, len(order), streams)
        yield from order[stream::streams]

    def _tar_samples(
        self, stream: int, streams: int, counter: BadSampleCounter, lazy: Callable[[], bool]
    ) -> Iterator[dict[str, Any]]:
        empty_in_a_row, limit = 0, 2 * len(self.shards) + 10
        for shard in self._shard_sequence(stream, streams):
            n = 0
            for n, sample in enumerate(iter_tar_samples(shard, counter, lazy()), start=1):  # noqa: B007
                yield sample
            empty_in_a_row = 0 if n else empty_in_a_row + 1
            if empty_in_a_row >= limit:
                raise RuntimeError(f"{self.name}: {limit} shards in a row held no readable sample (last {shard})")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Samples (``plan.batch_size`` None) or collated batches, each with this stream's meta record.

        In batch mode an incomplete last batch is dropped; if the stream's bad-sample counts changed after the
        last batch, a final ``{FLUSH_KEY: True, META_KEY: ...}`` item reports them.
        """
        role, workers = self._role()
        stream = _Stream(self, role, workers)
        batch_size = self.plan.batch_size
        if batch_size is None:
            yield from stream
            return
        batch: list[dict[str, Any]] = []
        reported: dict[str, int] = {}
        for sample in stream:
            batch.append(sample)
            if len(batch) == batch_size:
                reported = batch[-1][META_KEY][2]
                yield collate(batch)
                batch = []
        if stream.counter.snapshot() != reported:
            yield {FLUSH_KEY: True, META_KEY: (role, stream.cursor, stream.counter.snapshot())}

    # samples ---------------------------------------------------------------------------------------------
    def _decode(self, raw: dict[str, Any], counter: BadSampleCounter, seed: int) -> dict[str, Any] | None:
        where = f"shard {raw['__url__']}, key {raw['__key__']}"
        try:
            raw = {k: v.read() if isinstance(v, MemberRef) else v for k, v in raw.items()}
        except _TAR_ERRORS as err:
            counter.add("tar_error", where, err)
            return None
        ext = next((e for e in IMAGE_EXTENSIONS if e in raw), None)
        if ext is None:
            counter.add("no_image", where, f"members {sorted(k for k in raw if not k.startswith('__'))}")
            return None
        try:
            image = open_rgb(io.BytesIO(raw[ext]), name=f"{raw['__key__']}.{ext}")
        except UnreadableImage as err:
            counter.add("image_decode", f"{where} ({ext})", err.reason)
            return None
        except Exception as err:  # anything else PIL may raise for bad bytes
            counter.add("image_decode", f"{where} ({ext})", f"{type(err).__name__}: {err}")
            return None
        caption = _caption(raw)
        if caption is None:
            counter.add("no_caption", where, "no json 'caption' and no txt")
            return None
        try:
            with seeded_torch(seed):
                return {"image": self.vis_processor(image), "answer": self.text_processor(caption)}
        except Exception as err:
            counter.add("processor_error", where, err)
            return None


def _caption(raw: dict[str, Any]) -> str | None:
    """``json["caption"]`` if it is a non-empty string, else the ``txt`` member, else None."""
    if "json" in raw:
        try:
            meta = json.loads(raw["json"])
        except (ValueError, UnicodeDecodeError):
            meta = None
        caption = meta.get("caption") if isinstance(meta, dict) else None
        if isinstance(caption, str) and caption.strip():
            return caption
    if "txt" in raw:
        try:
            text = raw["txt"].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if text.strip():
            return text
    return None


class _Stream:
    """One stream's samples: raw samples (tar -> shuffle buffer), resume skipping, decoding, meta records."""

    def __init__(self, dataset: LegacyImageTextWebDataset, role: int, workers: int) -> None:
        plan = dataset.plan
        self.dataset, self.role = dataset, role
        self.stream, self.streams = plan.rank * workers + role, plan.world_size * workers
        self.counter = BadSampleCounter(f"{dataset.name}[rank {plan.rank} stream {role}]")
        self.skip = plan.resume_cursors[role] if role < len(plan.resume_cursors) else 0
        self.cursor = 0  # raw samples consumed (good or bad)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ds, plan, counter = self.dataset, self.dataset.plan, self.counter
        counter.enabled = self.skip == 0
        raw_samples = shuffle_buffer(
            ds._tar_samples(self.stream, self.streams, counter, lambda: self.cursor < self.skip),
            ds.shuffle_buffer,
            random.Random(derive_seed("buffer", plan.seed, plan.epoch, self.stream, self.streams)),
        )
        bad_in_a_row = 0
        for raw in raw_samples:
            self.cursor += 1
            if self.cursor <= self.skip:  # resume: drop what the interrupted run consumed, without decoding
                counter.enabled = self.cursor == self.skip
                continue
            seed = derive_seed("augment", plan.seed, plan.epoch, self.stream, self.streams, self.cursor)
            sample = ds._decode(raw, counter, seed)
            if sample is None:
                bad_in_a_row += 1
                if bad_in_a_row >= MAX_BAD_IN_A_ROW:
                    raise RuntimeError(f"{ds.name}: {bad_in_a_row} bad samples in a row: {counter.snapshot()}")
                continue
            bad_in_a_row = 0
            sample[META_KEY] = (self.role, self.cursor, counter.snapshot())
            yield sample
