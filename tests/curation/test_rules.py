"""The rule-based cleaner and the filter rules, each rejection with its reason."""

from __future__ import annotations

from omegaconf import OmegaConf

from minigpt4.curation.config import FilterConfig
from minigpt4.curation.filters import judge, repetition_ratio
from minigpt4.curation.refine import rule_clean


def test_rule_clean_removes_repeats_non_text_characters_and_the_incomplete_last_sentence():
    text = "A red circle is on the left. \u2603\u2603 A red circle is on the left! The background is black. It has a"
    cleaned, changes = rule_clean(text)
    assert cleaned == "A red circle is on the left. The background is black."
    assert changes == [
        "removed 2 non-text characters",
        "removed 1 repeated sentences",
        "removed an incomplete last sentence",
    ]


def test_rule_clean_keeps_a_correct_text_and_ends_a_lone_fragment():
    assert rule_clean("A blue star. It is large.") == ("A blue star. It is large.", [])
    assert rule_clean("a blue star at the top") == (
        "a blue star at the top.",
        ["ended the only sentence with a full stop"],
    )


def _rules(**changes):
    return OmegaConf.merge(OmegaConf.structured(FilterConfig), changes)


def test_each_rule_names_itself():
    rules = _rules(min_words=4, max_words=12, max_repetition=0.2, max_non_language=0.05, min_similarity=0.5)
    rule_names = lambda text, generated=None: [r["rule"] for r in judge(text, generated, rules)]  # noqa: E731
    assert rule_names("A red square is in the center of the image.") == []
    assert rule_names("") == ["empty"]
    assert rule_names("I'm sorry, I made a mistake in the paragraph.") == ["failure_phrase", "failure_phrase"]
    assert rule_names("I APOLOGIZE for that, here it is.") == ["failure_phrase"]
    assert rule_names("A square.") == ["too_short"]
    assert rule_names(" ".join(["word"] * 13) + ".") == ["too_long"]
    assert rule_names("A red square. A red square. A blue one.") == ["repetition"]
    assert rule_names("A red square \u2603\u2603\u2603 in the center.") == ["non_language"]
    assert rule_names("A red square is in the center.", "Completely different words about a tree.") == [
        "changed_too_much"
    ]
    assert repetition_ratio("One. One. One. Two.") == 0.5


def test_a_rule_set_to_none_is_off():
    assert judge("A square.", None, _rules(min_words=None)) == []
    assert judge("I apologize.", None, _rules(failure_phrases=[], min_words=None)) == []
