"""``filter``: named rules over each record's current text; a rejected record keeps every reason.

The current text is the latest refined version, or the generated one when nothing was refined. Rules (each off
when its setting is None): ``failure_phrase``, ``too_short``, ``too_long``, ``repetition``, ``non_language``,
``changed_too_much``; and, whatever the settings, ``unreadable_image``, ``refine_failed`` and ``empty``.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from minigpt4.curation.config import plain, settings_key
from minigpt4.curation.refine import is_text_char, sentence_key, split_sentences
from minigpt4.curation.store import Store, now

logger = logging.getLogger(__name__)

STEP = "filter"


def current_text(record: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(version, text, why there is none) of the record's current text."""
    latest = record.get("latest") or {}
    texts = record.get("texts") or {}
    refined = latest.get("refine")
    if refined is not None:
        if refined in texts:
            return refined, texts[refined]["text"], None
        failure = (record.get("failures") or {}).get(refined, {})
        return refined, None, f"refine_failed: {failure.get('error', 'no refined text')}"
    generated = latest.get("generate")
    if generated in texts:
        return generated, texts[generated]["text"], None
    if generated in (record.get("errors") or {}):
        return generated, None, f"unreadable_image: {record['errors'][generated]}"
    return None, None, None


def repetition_ratio(text: str) -> float:
    """The share of sentences that repeat an earlier one (0 for a text of at most one sentence)."""
    keys = [sentence_key(s) for s in split_sentences(text)]
    return (len(keys) - len(set(keys))) / len(keys) if keys else 0.0


def non_language_ratio(text: str) -> float:
    return sum(not is_text_char(c) for c in text) / len(text) if text else 0.0


def judge(text: str, generated: str | None, fcfg: DictConfig) -> list[dict[str, str]]:
    """The reasons to reject ``text`` (empty: it passes); ``generated`` is the text before refining."""
    reasons = []

    def reject(rule: str, detail: str) -> None:
        reasons.append({"rule": rule, "detail": detail})

    if not text.strip():
        reject("empty", "the text is empty")
        return reasons
    lowered = text.lower()
    for phrase in fcfg.failure_phrases:
        if phrase.lower() in lowered:
            reject("failure_phrase", f"contains {phrase!r}")
    words = len(text.split())
    if fcfg.min_words is not None and words < fcfg.min_words:
        reject("too_short", f"{words} words < {fcfg.min_words}")
    if fcfg.max_words is not None and words > fcfg.max_words:
        reject("too_long", f"{words} words > {fcfg.max_words}")
    ratio = repetition_ratio(text)
    if fcfg.max_repetition is not None and ratio > fcfg.max_repetition:
        reject("repetition", f"{ratio:.2f} of the sentences repeat > {fcfg.max_repetition}")
    share = non_language_ratio(text)
    if fcfg.max_non_language is not None and share > fcfg.max_non_language:
        reject("non_language", f"{share:.3f} of the characters are not text > {fcfg.max_non_language}")
    if fcfg.min_similarity is not None and generated is not None and generated != text:
        similarity = difflib.SequenceMatcher(None, generated, text, autojunk=False).ratio()
        if similarity < fcfg.min_similarity:
            reject("changed_too_much", f"similarity to the generated text {similarity:.2f} < {fcfg.min_similarity}")
    return reasons


@dataclass
class FilterReport:
    passed: int = 0
    rejected: int = 0
    already_done: int = 0
    skipped: int = 0


def run_filter(cfg: DictConfig, store: Store) -> FilterReport:
    """Judge every record's current text (records judged with these settings already are left as they are)."""
    fcfg = cfg.filter
    settings = plain(fcfg)
    report = FilterReport()
    for record in list(store):
        version, text, failure = current_text(record)
        if version is None:
            report.skipped += 1
            continue
        key = settings_key(STEP, {**settings, "text": version})
        verdict = (record.get("filters") or {}).get(key)
        if verdict is None:
            generated = (record.get("texts") or {}).get((record.get("latest") or {}).get("generate"), {}).get("text")
            if failure is not None:
                rule, _, detail = failure.partition(": ")
                reasons = [{"rule": rule, "detail": detail}]
            else:
                reasons = judge(text or "", generated, fcfg)
            verdict = {"text": version, "passed": not reasons, "reasons": reasons, "settings": settings, "time": now()}
            store.append([{"id": record["id"], "filters": {key: verdict}, "latest": {STEP: key}}])
        else:
            report.already_done += 1
            if store.latest(record["id"], STEP) != key:
                store.append([{"id": record["id"], "latest": {STEP: key}}])
        if verdict["passed"]:
            report.passed += 1
        else:
            report.rejected += 1
    logger.info(
        "filter: %d passed, %d rejected (%d judged before)", report.passed, report.rejected, report.already_done
    )
    return report
