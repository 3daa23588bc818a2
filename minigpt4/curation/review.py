"""Review decisions: accept, edit (accept with a corrected text) or reject a record's current text.

A decision is stored under ``review`` with the text version it was made on (``version``) and the final text;
``accept-passed`` accepts every record whose latest filter verdict passed and that has no decision on its
current text yet (a person's decisions are never overwritten).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from minigpt4.curation.filters import current_text
from minigpt4.curation.store import Store, now

logger = logging.getLogger(__name__)

DECISIONS = ("accept", "edit", "reject")


def verdict(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's latest filter verdict, if any."""
    key = (record.get("latest") or {}).get("filter")
    return (record.get("filters") or {}).get(key) if key else None


def current_review(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's review decision, when it was made on its current text."""
    version, _, _ = current_text(record)
    review = record.get("review")
    return review if review and review.get("version") == version else None


def decide(store: Store, record_id: str, decision: str, text: str | None = None, by: str = "reviewer") -> dict:
    """Store a decision at once; ``edit`` needs the corrected ``text``. Returns the stored decision."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; known: {', '.join(DECISIONS)}")
    record = store.get(record_id)
    if record is None:
        raise KeyError(f"no record {record_id!r} in {store.path}")
    version, current, _ = current_text(record)
    if decision == "edit":
        if not text or not text.strip():
            raise ValueError("an edit needs a non-empty text")
        final = text.strip()
    else:
        final = current if decision == "accept" else None
    if decision == "accept" and not current:
        raise ValueError(f"record {record_id!r} has no text to accept")
    review = {"decision": decision, "version": version, "text": final, "original": current, "by": by, "time": now()}
    store.append([{"id": record_id, "review": review}])
    return review


@dataclass
class AcceptReport:
    accepted: int = 0
    kept: int = 0
    not_passed: int = 0


def accept_passed(store: Store) -> AcceptReport:
    """Accept every record that passed the filter and has no decision on its current text."""
    report = AcceptReport()
    for record in list(store):
        judged = verdict(record)
        if judged is None or not judged["passed"] or judged["text"] != current_text(record)[0]:
            report.not_passed += 1
        elif current_review(record) is not None:
            report.kept += 1
        else:
            decide(store, record["id"], "accept", by="accept-passed")
            report.accepted += 1
    logger.info(
        "accept-passed: %d accepted, %d already decided, %d not passed", report.accepted, report.kept, report.not_passed
    )
    return report


def counts(store: Store) -> dict[str, int]:
    """How many records are accepted, edited, rejected and still to review (of those the filter judged)."""
    result = {"total": 0, "accept": 0, "edit": 0, "reject": 0, "pending": 0, "filtered_out": 0}
    for record in store:
        judged = verdict(record)
        if judged is None:
            continue
        result["total"] += 1
        review = current_review(record)
        if review is not None:
            result[review["decision"]] += 1
        elif judged["passed"]:
            result["pending"] += 1
        else:
            result["filtered_out"] += 1
    return result
