"""The schema of the ``evaluation`` section: prompts, decoding and output of ``evaluate.py``.

Decoding is :data:`minigpt4.conversation.generation.GREEDY` (the one ``GenerationConfig``, greedy: evaluation
numbers must not depend on a random draw); each decoding key set here overrides it. ``prompt`` and ``max_new_tokens`` left unset (None) take the task's own defaults
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
    # decoding: each key left unset (None) takes GREEDY's value (minigpt4/conversation/generation.py: the one
    # GenerationConfig, greedy); max_new_tokens unset takes the task's default (short for short-answer tasks)
    max_new_tokens: Optional[int] = None
    num_beams: Optional[int] = None
    do_sample: Optional[bool] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    min_length: Optional[int] = None
    repetition_penalty: Optional[float] = None
    length_penalty: Optional[float] = None
    max_length: Optional[int] = None  # context + new tokens
    limit: Optional[int] = None  # evaluate only the first N items of each set (a quick check)
    spice: bool = False  # captioning: also SPICE (its first run fetches Stanford CoreNLP models)
    progress_bar: bool = True  # tqdm bar with ETA on rank 0
