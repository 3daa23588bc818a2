"""VQA accuracy as the official VQA evaluation computes it, and GQA exact match.

Two steps, as on the official evaluation server:

1. :func:`normalize_answer` (what the server does to every submitted answer): newlines and tabs become spaces,
   punctuation is removed (or turned into a space), periods are dropped unless they are a decimal point, the text is
   lowercased, number words become digits (``two`` -> ``2``), the articles ``a``, ``an``, ``the`` are dropped and a
   contraction missing its apostrophe gets it back (``dont`` -> ``don't``).
2. :func:`vqa_accuracy` (the evaluation script): when the ten human answers disagree, they are punctuation-processed
   and the prediction is normalised again; then for each of the ten leave-one-out subsets of nine answers the
   accuracy is ``min(#answers equal to the prediction / 3, 1)``, and the score is the mean over the ten subsets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
ARTICLES = frozenset({"a", "an", "the"})
NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_DECIMAL = re.compile(r"(?!<=\d)(\.)(?!\d)")  # as the official script writes it (a lookahead, in effect)

# Contractions as the official table spells them; the forms without (some of) their apostrophes are derived below.
# Forms whose apostrophe-less spelling is an ordinary word (he'll -> hell, we're -> were, ...) are left out, as the
# official table leaves them out; so are the "I" forms, whose keys start with a capital there and so never match
# the lowercased text.
_CONTRACTIONS = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd "
    "he'd've he's how'd how'll how's isn't it'd it'd've it'll let's ma'am mightn't mightn't've might've mustn't "
    "must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've she's should've shouldn't shouldn't've "
    "somebody'd somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's something'd "
    "something'd've something'll that's there'd there'd've there're there's they'd they'd've they'll they're "
    "they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd where's where've "
    "who'd who'd've who'll who's who've why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll "
    "y'all'd've you'd you'd've you'll you're you've"
).split()
_NOT_CONTRACTIONS = frozenset({"hell", "ill", "id", "its", "well", "were", "wed", "shell", "shed"})


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for word in _CONTRACTIONS:
        cuts = [i for i, ch in enumerate(word) if ch == "'"]
        variants = {word.replace("'", "")}
        if len(cuts) > 1:  # drop just one of the apostrophes too: couldnt've, couldn'tve
            variants |= {word[:i] + word[i + 1 :] for i in cuts}
        for variant in variants - {word} - _NOT_CONTRACTIONS:
            table.setdefault(variant, word)
    return table


CONTRACTIONS = _contraction_table()


def process_punctuation(text: str) -> str:
    """The official punctuation step: a mark next to a space (or any mark, when the text has a comma between
    digits) is deleted, otherwise it becomes a space; then periods that are not decimal points are deleted."""
    out = text
    delete_all = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in PUNCTUATION:
        if delete_all or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_DECIMAL.sub("", out)


def process_digits_articles(text: str) -> str:
    """Lowercase, number words to digits, articles dropped, missing apostrophes of contractions restored."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(text: str) -> str:
    """A predicted answer as the official evaluation server normalises it before scoring."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digits_articles(process_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The VQA accuracy of one prediction against the human answers (ten in VQAv2 and OK-VQA).

    ``prediction`` is normalised (:func:`normalize_answer`) here; the human answers are used as the annotation
    file gives them, punctuation-processed when they disagree (the official script's rule).
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    gts = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    pred = normalize_answer(prediction)
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
        pred = process_digits_articles(process_punctuation(pred))
    scores = []
    for left_out in range(len(gts)):
        matching = sum(1 for j, a in enumerate(gts) if j != left_out and a == pred)
        scores.append(min(1.0, matching / 3))
    return sum(scores) / len(scores)


def exact_match(prediction: str, answer: str) -> float:
    """GQA accuracy: 1.0 when the normalised prediction equals the normalised answer."""
    return float(normalize_answer(prediction) == normalize_answer(answer))
