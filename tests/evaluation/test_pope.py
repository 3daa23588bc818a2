"""POPE answer parsing and scores, against hand-computed values."""

import pytest

from minigpt4.evaluation.pope import parse_yes_no, pope_scores


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("Yes, there is a red circle.", "yes"),
        ("No, there is not.", "no"),
        ("There is no red circle in the image.", "no"),
        ("It is not there", "no"),
        ("Yes. No other object is there.", "yes"),  # only the first sentence counts
        ("No.", "no"),
        ("a red circle", "yes"),  # neither word: yes, as POPE counts it
    ],
)
def test_parse_yes_no(text, parsed):
    assert parse_yes_no(text) == parsed


def test_pope_scores_hand_computed():
    predictions = ["yes", "yes", "no", "yes", "no", "no"]
    labels = ["yes", "no", "no", "yes", "yes", "no"]
    # tp = 2, fp = 1, tn = 2, fn = 1
    scores = pope_scores(predictions, labels)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["yes_ratio"] == pytest.approx(3 / 6)


def test_pope_always_yes_is_the_chance_f1():
    scores = pope_scores(["yes"] * 4, ["yes", "no", "yes", "no"])
    assert scores["accuracy"] == 0.5 and scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(2 / 3)


def test_pope_never_yes_has_zero_precision_and_f1():
    scores = pope_scores(["no"] * 2, ["yes", "no"])
    assert scores["precision"] == 0.0 and scores["f1"] == 0.0 and scores["yes_ratio"] == 0.0


def test_pope_scores_length_mismatch():
    with pytest.raises(ValueError, match="2 predictions but 1 labels"):
        pope_scores(["yes", "no"], ["yes"])
