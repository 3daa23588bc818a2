"""Shards read through webdataset's URL openers: ``pipe:`` commands and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from minigpt4.datasets.data_utils import TrainIterator
from minigpt4.datasets.datasets.common import FLUSH_KEY, META_KEY
from minigpt4.datasets.datasets.webdataset_source import StreamPlan, expand_shards, is_url
from tests.datasets.shard_utils import good_members, image_bytes, write_good_shards, write_tar
from tests.datasets.test_webdataset_source import make_dataset, plant_bad_shards


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; a file named in ``drop`` gets its full Content-Length but only half its bytes."""

    drop: frozenset[str] = frozenset()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        name = self.path.lstrip("/")
        if name not in self.drop:
            super().do_GET()
            return
        data = (Path(self.directory) / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True  # the connection is closed mid-body

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def serve():
    """``serve(folder, drop=())`` -> ``http://127.0.0.1:PORT`` serving ``folder`` (a free port, stopped after)."""
    servers = []

    def start(folder: Path, drop: tuple[str, ...] = ()) -> str:
        handler = type("Handler", (_Handler,), {"drop": frozenset(drop)})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def samples_and_counts(storage: str, **kw) -> tuple[list[tuple[str, torch.Tensor]], dict[str, int]]:
    """One pass as batches of 1; the stream's final record carries the counts of the bad samples after the last."""
    out, counts = [], {}
    for batch in make_dataset(storage, **kw).with_plan(StreamPlan(batch_size=1)):
        if not batch.get(FLUSH_KEY):
            out.append((batch["answer"][0], batch["image"][0]))
        counts = batch[META_KEY][2]
    return out, counts


def assert_same(a: list[tuple[str, torch.Tensor]], b: list[tuple[str, torch.Tensor]]) -> None:
    assert [x for x, _ in a] == [x for x, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))


def test_url_specs_expand_without_touching_the_files():
    specs = expand_shards("pipe:aws s3 cp s3://bucket/{00000..00002}.tar -::https://host/cc/{a,b}.tar")
    assert specs == [
        "pipe:aws s3 cp s3://bucket/00000.tar -",
        "pipe:aws s3 cp s3://bucket/00001.tar -",
        "pipe:aws s3 cp s3://bucket/00002.tar -",
        "https://host/cc/a.tar",
        "https://host/cc/b.tar",
    ]
    assert is_url("pipe:curl -s http://x/0.tar") and is_url("http://x/0.tar")
    assert not is_url("/data/laion/0.tar") and not is_url("data/0.tar") and not is_url("file:/data/0.tar")


def test_pipe_and_http_shards_give_the_local_samples(tmp_path: Path, serve):
    """The same shards, bad ones included, read locally, through ``pipe:cat`` and over HTTP: same samples and
    images (same augmentation), same bad-sample counts."""
    good, expected = plant_bad_shards(tmp_path)
    kw = {"resampled": False, "shuffle_buffer": 3}
    local, local_counts = samples_and_counts(f"{tmp_path}/{{00000..00003}}.tar", **kw)
    assert sorted(a for a, _ in local) == sorted(good) and local_counts == expected
    piped, piped_counts = samples_and_counts(f"pipe:cat {tmp_path}/{{00000..00003}}.tar", **kw)
    assert_same(piped, local)
    assert piped_counts == expected
    url = serve(tmp_path)
    fetched, fetched_counts = samples_and_counts(f"{url}/{{00000..00003}}.tar", **kw)
    assert_same(fetched, local)
    assert fetched_counts == expected


def dropped_shards(root: Path) -> list[str]:
    """Three shards; the middle one holds a large member early, so half its bytes end inside a sample."""
    write_good_shards(root, 1, 3, prefix="a")
    big = image_bytes("PNG", size=(96, 96), noise=True)
    members = good_members("b0", "b0") + [("b1.png", big), ("b1.txt", b"b1")] + good_members("b2", "b2")
    write_tar(root / "00001.tar", members)
    (root / "00002.tar").write_bytes((root / "00000.tar").read_bytes())  # same samples again, a third shard
    return ["as0 i0", "as0 i1", "as0 i2", "b0", "as0 i0", "as0 i1", "as0 i2"]


def test_a_dropped_connection_is_counted_and_survived(tmp_path: Path, serve, caplog):
    expected = dropped_shards(tmp_path)
    url = serve(tmp_path, drop=("00001.tar",))
    with caplog.at_level("WARNING", logger="minigpt4.datasets.datasets.common"):
        samples, counts = samples_and_counts(f"{url}/{{00000..00002}}.tar", resampled=False, shuffle_buffer=1)
    assert sorted(a for a, _ in samples) == sorted(expected)  # b1 (cut) and b2 (never arrived) are lost
    assert counts == {"read_error": 1}
    lines = [r.getMessage() for r in caplog.records if "(read_error)" in r.getMessage()]
    assert len(lines) == 1 and f"shard {url}/00001.tar, key b1" in lines[0] and "status 18" in lines[0], lines


def test_failing_pipe_command_and_missing_url_are_read_errors(tmp_path: Path, serve):
    write_good_shards(tmp_path, 1, 2)
    url = serve(tmp_path)
    storage = f"pipe:exit 3::{url}/missing.tar::{tmp_path}/00000.tar::pipe:cat {tmp_path}/none.tar"
    samples, counts = samples_and_counts(storage, resampled=False, shuffle_buffer=1)
    assert sorted(a for a, _ in samples) == ["s0 i0", "s0 i1"]
    assert counts == {"read_error": 3}


def draw(it: TrainIterator, n: int) -> list[tuple[tuple[str, ...], torch.Tensor]]:
    return [(tuple(b["answer"]), b["image"].clone()) for b in (next(it) for _ in range(n))]


def http_iterators(storage: str) -> Iterator[TrainIterator]:
    while True:
        ds = make_dataset(storage, resampled=True, shuffle_buffer=4)
        yield TrainIterator({"laion": (ds, 2, 1.0)}, num_workers=2, rank=0, world_size=1, device="cpu", seed=11)


def test_exact_resume_over_http_with_two_workers(tmp_path: Path, serve):
    write_good_shards(tmp_path, 4, 5)
    url = serve(tmp_path)
    fresh = http_iterators(f"{url}/{{00000..00003}}.tar")
    whole = next(fresh)
    expected = draw(whole, 12)
    first = next(fresh)
    draw(first, 5)
    state = first.state_dict()
    first.close()
    resumed = next(fresh)
    resumed.load_state_dict(state)
    rest = draw(resumed, 7)
    assert [a for a, _ in rest] == [a for a, _ in expected[5:]]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(rest, expected[5:]))
    for it in (whole, resumed):
        it.close()


def test_samples_read_before_a_command_fails_are_kept(tmp_path: Path):
    """A ``pipe:`` command that writes a whole shard and then exits with an error: every sample that arrived is
    kept (webdataset's own pipe reader raises at the first read after the exit, dropping what it had read), and
    the failure is counted once."""
    write_good_shards(tmp_path, 1, 3, prefix="a")
    spec = f"pipe:sh -c 'cat {tmp_path}/00000.tar; exit 3'"
    for _ in range(10):  # the exit races the reads (and the end of the tar): the same result every time
        samples, counts = samples_and_counts(spec, resampled=False, shuffle_buffer=1)
        assert sorted(a for a, _ in samples) == ["as0 i0", "as0 i1", "as0 i2"]
        assert counts == {"read_error": 1}
