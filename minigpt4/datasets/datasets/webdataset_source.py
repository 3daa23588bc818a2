"""Stage-1 image-text pairs from webdataset tar shards (the img2dataset layout: ``KEY.jpg``, ``KEY.json``, ``KEY.txt``).

The shards are read with the webdataset library. A shard spec is a local brace pattern
(``/data/laion/{00000..10488}.tar``), a ``pipe:`` command (``pipe:aws s3 cp s3://bucket/{00000..10488}.tar -``,
expanded to one command per shard) or an http(s) URL (read with ``curl``, webdataset's opener); several specs are
joined by ``::``. For each *stream* (one per rank and loader worker), in this order:

1. shard list: the specs expanded (:func:`expand_shards`); ``resampled`` streams draw shards at random with
   replacement forever (seeded by seed, rank, stream), the finite mode shuffles the list once per epoch and gives
   stream ``s`` of ``S`` the shards ``s::S`` (a deterministic split of ranks and loader workers);
2. each shard opened with ``webdataset.gopen`` and expanded by webdataset's tar stages (``tar_file_expander``,
   ``group_by_keys``: the stages of ``tarfile_to_samples``) into raw samples ``{ext: bytes}``; their ``handler``
   hook counts a shard that cannot be opened or read and ends that shard (:func:`iter_shard_samples`);
3. webdataset's shuffle buffer over raw samples (seeded per stream and epoch);
4. decoding (the image from the first member of ``image_key`` the sample has, the caption from ``caption_key``)
   and the processors, with the crop RNG seeded per sample.

A sample that cannot be used is skipped and counted per reason (:data:`BAD_REASONS`), and the first few of each
reason are logged with their shard and key. Every sample carries a small meta record (stream id, how many raw
samples the stream has consumed, the stream's bad-sample counts) that :mod:`minigpt4.datasets.data_utils` uses to
resume exactly: it restarts each stream and drops the recorded number of raw samples after step 3, before any image
is decoded (their bytes are read again, as a stream must be, but nothing is decoded).
"""

from __future__ import annotations

import copy
import glob
import io
import json
import logging
import os
import random
import re
import subprocess
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import webdataset as wds
from braceexpand import braceexpand
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander

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

DEFAULT_IMAGE_KEY = "jpg;jpeg;png;webp"  # alternatives, the first present is the image
DEFAULT_CAPTION_KEY = "json:caption;txt"  # json["caption"], else the txt member
BAD_REASONS = (
    "read_error",  # a shard could not be opened or read: missing, a failing pipe: command, an HTTP error or drop
    "tar_error",  # a shard's bytes are not a tar or end short (the shard ends there)
    "no_image",
    "image_decode",  # zero-byte, truncated or undecodable image
    "bad_json",  # the caption's JSON member is not valid JSON (and no other caption member gave one)
    "no_caption",  # no caption member, or an empty / non-text caption
    "processor_error",
)
MAX_BAD_IN_A_ROW = 10000  # a stream with this many unusable samples in a row is misconfigured
PIPE_EXIT_WAIT_S = 60.0  # how long to wait for a pipe: command that closed its output to report its status
CLEAN_END_WAIT_S = 5.0  # how long to wait, once a shard's tar has ended, for its command to exit (it is not counted)
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # a scheme of 2+ letters: pipe:, http:, s3:... (not C:\)
_BAD_MARK = "__bad__"  # a member suffix that makes webdataset's group_by_keys drop the sample (valid_sample)


# shard specs -----------------------------------------------------------------------------------------------------
def is_url(spec: str) -> bool:
    """Whether a shard spec is read through a URL opener (``pipe:``, ``http:``...) rather than as a local path."""
    return bool(_URL.match(spec)) and not spec.startswith("file:")


def expand_shards(storage: str | Sequence[str]) -> list[str]:
    """Expand shard specs into one spec per shard.

    Args:
        storage: one spec, several joined by ``::``, or a list of specs. A URL spec (``pipe:...``,
            ``http(s)://...``) is brace-expanded as webdataset does (a ``pipe:`` command gives one command per
            shard) and not checked here. A local pattern (``file:`` prefix optional; braces and globs) must match
            existing files; a relative one is tried against the current directory, then the repository root
            (see :func:`data_search_dirs`); missing shards of a brace list are skipped with a warning.

    Raises:
        FileNotFoundError: a local pattern matches no file (the pattern is in the message), or no spec is given.
    """
    patterns = storage.split("::") if isinstance(storage, str) else list(storage)
    patterns = [os.path.expanduser(p.strip()) for p in patterns if p and p.strip()]
    if not patterns:
        raise FileNotFoundError("no shard pattern given (build_info.storage is empty)")
    shards: list[str] = []
    for pattern in patterns:
        if is_url(pattern):
            shards.extend(expand_urls(pattern))
        else:
            shards.extend(_expand_local(re.sub(r"^file:(//)?", "", pattern)))
    return shards


def _expand_local(pattern: str) -> list[str]:
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
    return found


def data_search_dirs() -> list[str]:
    """Where relative data paths are looked for: the current directory, then the repository root."""
    return list(dict.fromkeys([os.getcwd(), get_repo_root()]))


def _existing(name: str) -> list[str]:
    if glob.has_magic(name):
        return sorted(glob.glob(name))
    return [name] if os.path.isfile(name) else []


# sample keys -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptionMember:
    """One place a caption may be: the member ``ext`` as text, or the string ``field`` of the JSON member ``ext``."""

    ext: str
    field: str | None = None


def parse_image_key(spec: str) -> tuple[str, ...]:
    """``"jpg;png"`` -> ``("jpg", "png")``: member extensions tried in order (webdataset's ``;`` alternatives)."""
    exts = tuple(e.strip().lower() for e in str(spec).split(";") if e.strip())
    if not exts or any(":" in e for e in exts):
        raise ValueError(f"image_key {spec!r}: expected member extensions separated by ';', e.g. {DEFAULT_IMAGE_KEY!r}")
    return exts


def parse_caption_key(spec: str) -> tuple[CaptionMember, ...]:
    """``"json:caption;txt"`` -> the JSON member's ``caption`` field, else the ``txt`` member, in that order."""
    members = []
    for part in (p.strip() for p in str(spec).split(";")):
        if not part:
            continue
        ext, _, name = part.partition(":")
        if not ext.strip() or (":" in part and not name.strip()):
            members = []
            break
        members.append(CaptionMember(ext.strip().lower(), name.strip() or None))
    if not members:
        raise ValueError(
            f"caption_key {spec!r}: expected members ('txt') or JSON fields ('json:caption') separated by ';', "
            f"e.g. {DEFAULT_CAPTION_KEY!r}"
        )
    return tuple(members)


def find_caption(raw: dict[str, Any], members: Sequence[CaptionMember]) -> tuple[str | None, str]:
    """The first non-empty caption of ``members`` in ``raw``, or None and the reason (``bad_json``/``no_caption``)."""
    reason = "no_caption"
    for member in members:
        data = raw.get(member.ext)
        if not isinstance(data, bytes):
            continue
        if member.field is None:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if text.strip():
                return text, ""
            continue
        try:
            meta = json.loads(data)
        except (ValueError, UnicodeDecodeError):  # UnicodeDecodeError is a ValueError; named for the reader
            reason = "bad_json"
            continue
        value = meta.get(member.field) if isinstance(meta, dict) else None
        if isinstance(value, str) and value.strip():
            return value, ""
    return None, reason


# one shard through webdataset ------------------------------------------------------------------------------------
class _ShardStream:
    """The stream ``webdataset.gopen`` opened, noting whether its end was reached (a short read).

    A ``pipe:`` / http stream is read from the command's output itself, not through webdataset's ``Pipe.read``:
    that one raises as soon as the command has exited with an error, dropping the bytes it has just read, so a
    connection cut mid-shard would lose, depending on timing, complete samples that had arrived before the cut.
    Here every byte that arrived is read; the command's status is asked once its output ends
    (:meth:`failed_command`), where the tar reader meets the truncation.
    """

    def __init__(self, url: str, raw: Any) -> None:
        self.url, self.raw, self.at_eof = url, raw, False
        inner = getattr(raw, "stream", None)
        self.source = inner if getattr(raw, "proc", None) is not None and hasattr(inner, "read") else raw

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if size is None or size < 0 or len(data) < size:
            self.at_eof = True
        return data

    def failed_command(self, wait: bool = False) -> str | None:
        """For a ``pipe:``/http stream whose output ended or whose command has exited: why the command failed, or
        None if it did not (or is still running). ``wait``: give the command a moment to exit first (the shard's
        tar has ended, so it has nothing left to write)."""
        proc = getattr(self.raw, "proc", None)
        if proc is None:
            return None
        if self.at_eof or wait:
            try:
                status = proc.wait(PIPE_EXIT_WAIT_S if self.at_eof else CLEAN_END_WAIT_S)
            except subprocess.TimeoutExpired:
                return None
        else:  # webdataset may have seen the command's status first (its read raises): ask without waiting
            status = proc.poll()
            if status is None:
                return None
        if status in getattr(self.raw, "ignore_status", [0]):
            return None
        return f"the command reading it exited with status {status}"

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception as err:  # a pipe stopped early may report a status; the shard's samples are already out
            logger.debug("closing shard %s: %s", self.url, _describe(err))

    def __str__(self) -> str:  # webdataset appends "@ <stream>" to error messages
        return self.url


def _describe(err: BaseException) -> str:
    """An error in plain words: its type and first argument (webdataset appends streams and URLs to the rest)."""
    first = str(err.args[0]) if err.args else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


class _ShardErrors:
    """The ``handler`` and ``select_files`` hooks of webdataset's tar stages for one shard."""

    def __init__(self, url: str, stream: _ShardStream, counter: BadSampleCounter) -> None:
        self.url, self.stream, self.counter = url, stream, counter
        self.last_member: str | None = None  # the member being read when an error comes
        self.failed_key: str | None = None
        self.pending: tuple[str, str, str] | None = None  # (reason, where, detail), counted once the shard is out

    def select(self, fname: str) -> bool:
        self.last_member = fname
        return True

    def on_tar_error(self, err: Exception) -> bool:
        """Note the error and end the shard (False); the sample being assembled is dropped.

        The error is counted by :meth:`report` after the shard's last good sample, where a reader that groups
        members as they come meets it (``group_by_keys`` holds a sample back until it sees the next key).
        """
        failed = self.stream.failed_command()
        if failed is not None:
            reason, detail = "read_error", f"{failed} ({_describe(err)})"
        else:
            reason, detail = ("tar_error" if isinstance(err, _TAR_ERRORS) else "read_error"), _describe(err)
        self.failed_key = base_plus_ext(self.last_member)[0] if self.last_member else None
        where = f"shard {self.url}" + (f", key {self.failed_key}" if self.failed_key else "")
        self.pending = (reason, where, detail)
        return False

    def report(self) -> None:
        if self.pending is not None:
            self.counter.add(*self.pending)
            self.pending = None

    def on_group_error(self, err: Exception) -> bool:
        """A member name repeated within a sample: count it and go on (the first copy is kept)."""
        self.counter.add("tar_error", f"shard {self.url}", _describe(err))
        return True

    def files(self, files: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The tar members, without webdataset's end-of-shard marker (one shard per pipeline); after an error, a
        member that marks the sample being assembled bad so that ``group_by_keys`` drops it."""
        for item in files:
            if item:
                yield item
        if self.failed_key is not None:
            yield {"fname": f"{self.failed_key}.{_BAD_MARK}", "data": True, "__url__": self.url}


def iter_shard_samples(url: str, counter: BadSampleCounter) -> Iterator[dict[str, Any]]:
    """Raw samples ``{"__key__", "__url__", ext: bytes}`` of one shard (a local path, ``pipe:`` or URL).

    The shard is opened with ``webdataset.gopen`` and expanded by webdataset's ``tar_file_expander`` and
    ``group_by_keys``. A shard that cannot be opened or read counts one ``read_error``, bytes that are not a tar or
    end short one ``tar_error``; the shard ends there and the sample being assembled is dropped.
    """
    try:
        stream = _ShardStream(url, wds.gopen(url, "rb"))
    except Exception as err:  # a missing file, an unknown scheme...
        counter.add("read_error", f"shard {url}", _describe(err))
        return
    hooks = _ShardErrors(url, stream, counter)
    try:
        files = tar_file_expander(
            [{"url": url, "stream": stream}], handler=hooks.on_tar_error, select_files=hooks.select
        )
        yield from group_by_keys(hooks.files(files), handler=hooks.on_group_error)
        if hooks.pending is None:  # the tar ended cleanly: a pipe:/http command may still have failed after it
            failed = stream.failed_command(wait=True)
            if failed is not None:
                counter.add("read_error", f"shard {url}", f"{failed} after the shard's last sample")
        hooks.report()
    finally:
        stream.close()


# the dataset -----------------------------------------------------------------------------------------------------
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


class ImageTextWebDataset(IterableDataset):
    """Endless (``resampled``) or finite stream of ``{"image", "answer"}`` from webdataset shards.

    Args:
        storage: shard spec(s), see :func:`expand_shards`; local patterns are checked at construction.
        vis_processor: PIL image -> tensor.
        text_processor: caption -> text.
        resampled: draw shards with replacement forever (stage-1 training) instead of one pass per epoch.
        shuffle_buffer: size of the raw-sample shuffle buffer (<= 1: no shuffling).
        name: the source name used in logs.
        image_key: image member extensions, the first present is used (see :func:`parse_image_key`).
        caption_key: caption members or JSON fields, the first non-empty is used (see :func:`parse_caption_key`).
    """

    def __init__(
        self,
        storage: str | Sequence[str],
        vis_processor: Callable[[Image.Image], Any],
        text_processor: Callable[[str], str],
        resampled: bool = True,
        shuffle_buffer: int = 1000,
        name: str = "webdataset",
        image_key: str = DEFAULT_IMAGE_KEY,
        caption_key: str = DEFAULT_CAPTION_KEY,
    ) -> None:
        super().__init__()
        self.image_exts = parse_image_key(image_key)
        self.caption_members = parse_caption_key(caption_key)
        self.shards = expand_shards(storage)
        self.vis_processor = vis_processor
        self.text_processor = text_processor
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.name = name
        self.plan = StreamPlan()
        logger.info(
            "%s: %d shards (first %s), resampled=%s, shuffle buffer %d, image %r, caption %r",
            name,
            len(self.shards),
            self.shards[0],
            resampled,
            shuffle_buffer,
            image_key,
            caption_key,
        )

    def with_plan(self, plan: StreamPlan) -> ImageTextWebDataset:
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

    def _tar_samples(self, stream: int, streams: int, counter: BadSampleCounter) -> Iterator[dict[str, Any]]:
        empty_in_a_row, limit = 0, 2 * len(self.shards) + 10
        for shard in self._shard_sequence(stream, streams):
            n = 0
            for n, sample in enumerate(iter_shard_samples(shard, counter), start=1):  # noqa: B007
                yield sample
            empty_in_a_row = 0 if n else empty_in_a_row + 1
            if empty_in_a_row >= limit:
                raise RuntimeError(f"{self.name}: {limit} shards in a row held no readable sample (last {shard})")

    def raw_samples(self, stream: int, streams: int, counter: BadSampleCounter) -> Iterator[dict[str, Any]]:
        """Stream ``stream`` of ``streams``: raw samples after the (seeded) shuffle buffer, not decoded."""
        raw = self._tar_samples(stream, streams, counter)
        if self.shuffle_buffer <= 1:
            return raw
        plan = self.plan
        seed = derive_seed("buffer", plan.seed, plan.epoch, stream, streams)
        return wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, seed=seed)(raw)

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
        ext = next((e for e in self.image_exts if e in raw), None)
        if ext is None:
            members = sorted(k for k in raw if not k.startswith("__"))
            counter.add("no_image", where, f"members {members}, image_key {';'.join(self.image_exts)}")
            return None
        try:
            image = open_rgb(io.BytesIO(raw[ext]), name=f"{raw['__key__']}.{ext}")
        except UnreadableImage as err:
            counter.add("image_decode", f"{where} ({ext})", err.reason)
            return None
        except Exception as err:  # anything else PIL may raise for bad bytes
            counter.add("image_decode", f"{where} ({ext})", f"{type(err).__name__}: {err}")
            return None
        caption, reason = find_caption(raw, self.caption_members)
        if caption is None:
            wanted = ";".join(m.ext + (f":{m.field}" if m.field else "") for m in self.caption_members)
            detail = "its JSON member is not valid JSON" if reason == "bad_json" else "no non-empty caption"
            counter.add(reason, where, f"{detail} (caption_key {wanted})")
            return None
        try:
            with seeded_torch(seed):
                return {"image": self.vis_processor(image), "answer": self.text_processor(caption)}
        except Exception as err:
            counter.add("processor_error", where, err)
            return None


class _Stream:
    """One stream's samples: raw samples (shards -> shuffle buffer), resume skipping, decoding, meta records."""

    def __init__(self, dataset: ImageTextWebDataset, role: int, workers: int) -> None:
        plan = dataset.plan
        self.dataset, self.role = dataset, role
        self.stream, self.streams = plan.rank * workers + role, plan.world_size * workers
        self.counter = BadSampleCounter(f"{dataset.name}[rank {plan.rank} stream {role}]")
        self.skip = plan.resume_cursors[role] if role < len(plan.resume_cursors) else 0
        self.cursor = 0  # raw samples consumed (good or bad)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ds, plan, counter = self.dataset, self.dataset.plan, self.counter
        counter.enabled = self.skip == 0  # what the skipped part counted is in the saved state already
        bad_in_a_row = 0
        for raw in ds.raw_samples(self.stream, self.streams, counter):
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
