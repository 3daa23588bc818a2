"""POPE (Polling-based Object Probing Evaluation): yes/no answers about objects, scored as the POPE code does."""

from __future__ import annotations

from collections.abc import Sequence

NEGATIVE_WORDS = frozenset({"No", "no", "not"})


def parse_yes_no(text: str) -> str:
    """``"no"`` when the first sentence has the word No, no or not (commas removed, split on spaces), else ``"yes"``.

    This is POPE's own rule, so an answer that says neither counts as yes.
    """
    first = text.split(".")[0] if "." in text else text
    words = first.replace(",", "").split(" ")
    return "no" if NEGATIVE_WORDS.intersection(words) else "yes"


def pope_scores(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of "yes" (the positive class), and the share of "yes" answers.

    ``predictions`` are parsed answers (``"yes"`` / ``"no"``, see :func:`parse_yes_no`); ``labels`` the truth.
    Precision (recall) is 0 when nothing is predicted (labelled) yes.
    """
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        raise ValueError("pope_scores needs at least one answer")
    pairs = list(zip(predictions, labels))
    tp = sum(p == "yes" and y == "yes" for p, y in pairs)
    fp = sum(p == "yes" and y == "no" for p, y in pairs)
    tn = sum(p == "no" and y == "no" for p, y in pairs)
    fn = sum(p == "no" and y == "yes" for p, y in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(pairs),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": (tp + fp) / len(pairs),
    }
