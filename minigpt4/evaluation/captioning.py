"""The official COCO caption evaluation (pycocoevalcap): PTB tokenizer, BLEU-1..4, METEOR, ROUGE-L, CIDEr.

The tokenizer and METEOR run Java (a ``java`` on the PATH; Debian: ``default-jre-headless``). SPICE is optional
(``spice=True``): its first run fetches Stanford CoreNLP models, which this project never does by itself.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)


def caption_scores(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], spice: bool = False
) -> dict[str, float]:
    """Corpus-level caption metrics of ``predictions`` (``{image id: caption}``) against ``references``.

    Every image of ``predictions`` needs references. Returns ``{"Bleu_1": ..., "Bleu_4": ..., "METEOR": ...,
    "ROUGE_L": ..., "CIDEr": ...}`` (and ``"SPICE"``), the names COCOEvalCap uses.

    Raises:
        RuntimeError: when ``java`` is not installed.
        KeyError: naming an image without references.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if shutil.which("java") is None:
        raise RuntimeError(
            "the COCO caption evaluation needs Java (the PTB tokenizer and METEOR): install a Java runtime, "
            "e.g. apt-get install default-jre-headless"
        )
    missing = [key for key in predictions if key not in references]
    if missing:
        raise KeyError(f"image {missing[0]!r} has a prediction but no reference captions")
    ids = sorted(predictions)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in references[i]] for i in ids})
    res = tokenizer.tokenize({i: [{"caption": predictions[i]}] for i in ids})
    scorers = [(Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (Meteor(), ["METEOR"]), (Rouge(), ["ROUGE_L"])]
    scorers.append((Cider(), ["CIDEr"]))
    if spice:
        from pycocoevalcap.spice.spice import Spice

        scorers.append((Spice(), ["SPICE"]))
    scores: dict[str, float] = {}
    for scorer, names in scorers:
        score, _ = scorer.compute_score(gts, res)
        values = score if isinstance(score, list) else [score]
        scores.update({name: float(value) for name, value in zip(names, values)})
        logger.debug("%s: %s", type(scorer).__name__, values)
    return scores
