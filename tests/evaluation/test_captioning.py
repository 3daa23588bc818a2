"""The caption metrics: equal to pycocoevalcap's scorers called directly, and a hand-computed BLEU-1."""

import math

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from minigpt4.evaluation.captioning import caption_scores

REFERENCES = {
    "1": ["A red circle on the left.", "red circles, on the left side"],
    "2": ["a blue star at the top", "Blue stars near the top of the image."],
    "3": ["a small group of green squares", "green squares in the center"],
}
PREDICTIONS = {"1": "a red circle on the left", "2": "a green star at the top", "3": "green squares in the middle"}


def test_scores_equal_pycocoevalcap_called_directly():
    ours = caption_scores(PREDICTIONS, REFERENCES)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": v}] for k, v in PREDICTIONS.items()})
    bleu, _ = Bleu(4).compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    assert [ours[f"Bleu_{n}"] for n in range(1, 5)] == pytest.approx(bleu)
    assert ours["CIDEr"] == pytest.approx(cider)
    assert ours["ROUGE_L"] == pytest.approx(rouge)
    assert 0 < ours["METEOR"] < 1
    assert ours["CIDEr"] > caption_scores({k: "a picture" for k in PREDICTIONS}, REFERENCES)["CIDEr"]


def test_bleu1_hand_computed():
    # "a red circle": all 3 words are in the reference (precision 1); closest reference length 6 > 3, so the
    # brevity penalty is exp(1 - 6 / 3)
    scores = caption_scores({"1": "a red circle"}, {"1": ["a red circle on the left"]})
    assert scores["Bleu_1"] == pytest.approx(math.exp(1 - 6 / 3), rel=1e-6)


def test_a_prediction_without_references_is_named():
    with pytest.raises(KeyError, match="image '9'"):
        caption_scores({"9": "a cat"}, REFERENCES)
