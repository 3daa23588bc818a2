"""The curation store: later lines extend earlier ones, a torn last line is ignored then cut off, parts merge."""

from __future__ import annotations

import json

import pytest

from minigpt4.common.config import InputFileError
from minigpt4.curation.store import Store, part_path, without_times


def test_later_lines_extend_and_supersede(tmp_path):
    store = Store(tmp_path / "s.jsonl")
    store.append(
        [{"id": "1", "texts": {"generate:a": {"text": "one", "time": 1.0}}, "latest": {"generate": "generate:a"}}]
    )
    store.append([{"id": "1", "texts": {"generate:b": {"text": "two"}}, "latest": {"generate": "generate:b"}}])
    store.append([{"id": "2", "review": {"decision": "reject"}}])
    store.close()
    again = Store(tmp_path / "s.jsonl")
    record = again.get("1")
    assert record["texts"] == {"generate:a": {"text": "one", "time": 1.0}, "generate:b": {"text": "two"}}
    assert again.latest("1", "generate") == "generate:b"
    assert len(again) == 2 and without_times(record)["texts"]["generate:a"] == {"text": "one"}


def test_torn_last_line_is_ignored_with_a_warning_and_cut_before_the_next_append(tmp_path, caplog):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"id": "1", "x": 1}) + "\n" + '{"id": "2", "x"')
    store = Store(path)
    assert list(store.records) == ["1"]
    assert "incomplete last line" in caplog.text
    store.append([{"id": "3", "x": 3}])
    store.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["1", "3"]


def test_a_bad_line_before_the_end_names_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "1"}\nnot json\n{"id": "2"}\n')
    with pytest.raises(InputFileError, match=r"s\.jsonl:2: not a JSON line"):
        Store(path)


def test_rank_parts_are_read_and_merged_into_the_store(tmp_path):
    path = tmp_path / "s.jsonl"
    for rank in (0, 1):
        part = Store(path, write_to=part_path(path, rank))
        part.append([{"id": f"r{rank}", "rank": rank}])
        part.close()
    assert sorted(Store(path).records) == ["r0", "r1"]
    assert Store(path).merge_parts() == 2
    assert not list(tmp_path.glob("s.jsonl.rank*"))
    assert sorted(Store(path).records) == ["r0", "r1"]
