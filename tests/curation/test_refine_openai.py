"""The OpenAI-compatible refine backend against a real HTTP server on 127.0.0.1 (tests/curation/chat_server.py):
429, 500, a timeout and a malformed reply are retried or recorded as failed; nothing is lost or sent twice."""

from __future__ import annotations

import yaml

from minigpt4.curation.config import load_curate_config
from minigpt4.curation.filters import run_filter
from minigpt4.curation.refine import run_refine
from minigpt4.curation.store import Store
from tests.curation.chat_server import ChatServer, transform

TEXTS = {
    "ok1": "a red circle on the left.",
    "ok2": "a blue star at the top. it is large.",
    "rate": "a RATE limited green square.",
    "boom": "a BOOM yellow triangle.",
    "slow": "a SLOW purple star in the center.",
    "bad": "a BAD reply about a circle.",
    "empty": "an EMPTY reply about a square.",
    "sorry": "a SORRY reply about a star.",
}


def _store(path, texts=TEXTS):
    store = Store(path)
    store.append(
        [
            {"id": i, "texts": {"generate:x": {"step": "generate", "text": t}}, "latest": {"generate": "generate:x"}}
            for i, t in texts.items()
        ]
    )
    return store


def _config(tmp_path, url, **openai):
    cfg = {
        "store": str(tmp_path / "store.jsonl"),
        "refine": {
            "backend": "openai",
            "openai": {"model": "tiny", "base_url": url, "concurrency": 3, "timeout": 0.5, "max_retries": 2}
            | {"backoff": 0.01, "price_input": 2.0, "price_output": 4.0}
            | openai,
        },
        "filter": {"min_words": 2, "min_similarity": None},
    }
    path = tmp_path / "curate.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_curate_config(path)


def test_errors_are_retried_or_recorded_and_nothing_is_lost_or_duplicated(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    store = _store(tmp_path / "store.jsonl")
    with ChatServer(slow_seconds=1.5) as server:
        cfg = _config(tmp_path, server.url)
        report = run_refine(cfg, store)
        first_counts = dict(server.requests)
        again = run_refine(cfg, Store(tmp_path / "store.jsonl"))  # a rerun retries only the failed one
    assert report.failed == ["bad"] and report.refined == 7
    # one request each, one more for each first-time 429 / 500 / timeout, 3 tries for the malformed reply
    retried = {TEXTS["rate"]: 2, TEXTS["boom"]: 2, TEXTS["slow"]: 2, TEXTS["bad"]: 3}
    expected = {TEXTS[i]: 1 for i in TEXTS} | retried
    assert first_counts == expected
    assert report.usage.requests == sum(expected.values())  # every try counted, the failed ones too
    assert again.failed == ["bad"] and again.refined == 0 and again.already_done == 7
    assert server.requests[TEXTS["bad"]] == 6 and server.requests[TEXTS["ok1"]] == 1

    records = Store(tmp_path / "store.jsonl")
    for record_id, text in TEXTS.items():
        record = records.get(record_id)
        refined = [v for k, v in record["texts"].items() if k.startswith("refine:")]
        if record_id == "bad":
            assert refined == []
            (failure,) = record["failures"].values()
            assert failure["attempts"] == 3 and failure["error"]
            continue
        assert len(refined) == 1, record_id  # one version, never two
        entry = refined[0]
        reply = "" if record_id == "empty" else "I'm sorry, I cannot fix this." if record_id == "sorry" else None
        assert entry["text"] == (transform(text) if reply is None else reply)
        assert entry["backend"] == "openai" and entry["model"] == "tiny" and entry["input"] == "generate:x"
        assert entry["settings"]["prompt"].startswith("Fix the error in the given paragraph.")
    usage = report.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert abs(usage.cost - (usage.prompt_tokens * 2.0 + usage.completion_tokens * 4.0) / 1e6) < 1e-12

    verdicts = run_filter(cfg, records)
    assert verdicts.passed == 5 and verdicts.rejected == 3
    reasons = {r["id"]: [x["rule"] for x in r["filters"][r["latest"]["filter"]]["reasons"]] for r in records}
    assert reasons["bad"] == ["refine_failed"] and reasons["empty"] == ["empty"]
    assert reasons["sorry"] == ["failure_phrase", "failure_phrase"]


def test_a_missing_api_key_without_a_base_url_is_a_clear_error(tmp_path, monkeypatch):
    import pytest

    from minigpt4.common.config import ConfigError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    store = _store(tmp_path / "store.jsonl", {"a": "a text."})
    cfg = _config(tmp_path, None)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        run_refine(cfg, store)
