"""VQA accuracy and answer normalisation against the official evaluation's documented examples and hand-computed
cases."""

import pytest

from minigpt4.evaluation.vqa import exact_match, normalize_answer, vqa_accuracy


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two", "2"),  # lowercase, number words to digits
        ("the dog", "dog"),  # articles dropped
        ("a red Apple.", "red apple"),  # period that is not a decimal point dropped
        ("3.5", "3.5"),  # decimal point kept
        ("100,978", "100978"),  # comma between digits removed, not spaced
        ("dont know", "don't know"),  # missing apostrophe of a contraction restored
        ("yes!", "yes"),
        ("black-and-white", "black and white"),  # punctuation without a space next to it becomes a space
        ("left , right", "left right"),  # punctuation next to a space is removed
        ("  on\tthe\nleft ", "on left"),
        ("well", "well"),  # an ordinary word that looks like a contraction without its apostrophe stays
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_vqa_accuracy_on_hand_computed_questions():
    # ten human answers each; the score is the mean over the ten leave-one-out subsets of min(matches / 3, 1)
    ten_yes = ["yes"] * 10
    assert vqa_accuracy("Yes", ten_yes) == 1.0
    assert vqa_accuracy("no", ten_yes) == 0.0
    # 2 of 10 say "2": subsets without one of them have 1 match (1/3), the 8 others 2 matches (2/3)
    two = ["2", "2"] + ["3"] * 8
    assert vqa_accuracy("two", two) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)
    # 3 of 10: (3 * 2/3 + 7 * 1) / 10 = 0.9
    circles = ["circle"] * 7 + ["circles"] * 3
    assert vqa_accuracy("circles", circles) == pytest.approx(0.9)
    # 4 of 10: every subset has at least 3 matches
    assert vqa_accuracy("red", ["red"] * 4 + ["blue"] * 6) == 1.0
    # disagreeing human answers are punctuation-processed too: "t-shirt" matches "t shirt"
    assert vqa_accuracy("t shirt", ["t-shirt"] * 3 + ["shirt"] * 7) == pytest.approx(0.9)


def test_vqa_accuracy_keeps_the_official_rule_for_unanimous_answers():
    # when all human answers agree they are compared as written (the official script only processes them when
    # they disagree), while the prediction is always normalised: "the beach" never matches "the beach"
    assert vqa_accuracy("the beach", ["the beach"] * 10) == 0.0
    assert vqa_accuracy("beach", ["beach"] * 10) == 1.0


def test_vqa_accuracy_needs_answers():
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("yes", [])


def test_gqa_exact_match_after_normalisation():
    assert exact_match("The Table.", "table") == 1.0
    assert exact_match("tables", "table") == 0.0
