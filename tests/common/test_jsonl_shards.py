"""The append-only JSONL output that batch captioning and evaluation resume from."""

from __future__ import annotations

import json

from minigpt4.common.jsonl_shards import append_in_batches, done_records


def test_append_in_batches_writes_every_record_after_a_torn_line(tmp_path):
    out = tmp_path / "answers.jsonl"
    out.write_text('{"id": 0, "answer": "a"}\n{"id": 1, "ans', encoding="utf-8")  # killed mid-write
    seen_batches = []

    def answer(batch):
        seen_batches.append(list(batch))
        return [{"id": i, "answer": str(i)} for i in batch]

    written = append_in_batches(out, [2, 3, 4], 2, answer, desc="test", show_progress=False, durable=True)
    assert written == 3 and seen_batches == [[2, 3], [4]]
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[1] == '{"id": 1, "ans' and [json.loads(line)["id"] for line in lines[2:]] == [2, 3, 4]
    assert [r["id"] for r in done_records(out)] == [0, 2, 3, 4]  # the torn record is dropped, none is glued to it
