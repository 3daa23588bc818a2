"""The schema of the ``evaluation`` section: prompts, decoding and output of ``evaluate.py``.

Decoding defaults to greedy search without a repetition penalty (``do_sample: False``): evaluation numbers must
not depend on a random draw. ``prompt`` and ``max_new_tokens`` left unset (None) take the task's own defaults
(:mod:`minigpt4.tasks.evaluation_tasks`): a detailed-caption instruction, or a short-answer one with a few tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class EvaluationConfig:
    """Every key the ``evaluation`` section accepts, with its default."""

    # the question asked about each item; "{question}" stands for the benchmark's question (VQA, POPE)
    prompt: Optional[str] = None  # None: the task's default
    max_new_tokens: Optional[int] = None  # None: the task's default (short for short-answer tasks)
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 0.9
    min_length: int = 1
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    max_length: int = 2000  # context + new tokens
    limit: Optional[int] = None  # evaluate only the first N items of each set (a quick check)
    spice: bool = False  # captioning: also SPICE (its first run fetches Stanford CoreNLP models)
    progress_bar: bool = True  # tqdm bar with ETA on rank 0
