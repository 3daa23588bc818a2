"""``refine``: clean each description, by rules, with an LLM behind an OpenAI-compatible endpoint, or with a local
Hugging Face causal LM (batched, greedy).

The version key of a refined text is the hash of the backend's settings and of the input version it refined,
so a rerun with the same settings skips what is done and a rerun with others adds a version. A record whose
refine failed (after the retries) keeps the error under ``failures`` and is tried again by the next run; the
filter step rejects it meanwhile (``refine_failed``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from minigpt4.common.config import ConfigError
from minigpt4.curation.config import settings_key
from minigpt4.curation.store import Store, now
from minigpt4.models.base_model import resolve_model_path

logger = logging.getLogger(__name__)

STEP = "refine"
SENTENCE_END = ".!?"
KEPT_PUNCTUATION = set(".,;:!?'\"()-%/&")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")


# ----------------------------------------------------------------------------------------------------------
# the rule-based cleaner
# ----------------------------------------------------------------------------------------------------------


def is_text_char(char: str) -> bool:
    """Letters and digits of any script, whitespace and common punctuation."""
    return char.isalnum() or char.isspace() or char in KEPT_PUNCTUATION


def split_sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in _SENTENCE_SPLIT.split(text.strip())) if s]


def sentence_key(sentence: str) -> str:
    """A sentence compared without case, punctuation or extra spaces."""
    return " ".join("".join(c for c in sentence.lower() if c.isalnum() or c.isspace()).split())


def rule_clean(text: str) -> tuple[str, list[str]]:
    """The cleaned text and what was changed: non-text characters removed, repeated sentences dropped, an
    incomplete last sentence dropped (or, when it is the only one, ended with a full stop)."""
    changes = []
    kept_chars = "".join(c for c in text if is_text_char(c))
    if kept_chars != text:
        changes.append(f"removed {len(text) - len(kept_chars)} non-text characters")
    sentences = split_sentences(" ".join(kept_chars.split()))
    unique, seen = [], set()
    for sentence in sentences:
        key = sentence_key(sentence)
        if key and key in seen:
            continue
        seen.add(key)
        unique.append(sentence)
    if len(unique) < len(sentences):
        changes.append(f"removed {len(sentences) - len(unique)} repeated sentences")
    if unique and unique[-1][-1] not in SENTENCE_END:
        if len(unique) > 1:
            unique.pop()
            changes.append("removed an incomplete last sentence")
        else:
            unique[-1] += "."
            changes.append("ended the only sentence with a full stop")
    return " ".join(unique), changes


# ----------------------------------------------------------------------------------------------------------
# the OpenAI-compatible backend
# ----------------------------------------------------------------------------------------------------------


class MalformedReply(ValueError):
    """A chat-completions reply without a usable message."""


@dataclass
class Usage:
    """Tokens and cost of the LLM calls of one run."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add(self, usage: dict[str, int], price_input: float, price_output: float) -> float:
        self.prompt_tokens += usage["prompt_tokens"]
        self.completion_tokens += usage["completion_tokens"]
        cost = (usage["prompt_tokens"] * price_input + usage["completion_tokens"] * price_output) / 1e6
        self.cost += cost
        return cost


def read_prompt(path: str) -> str:
    from minigpt4.models.base_model import resolve_model_path

    with open(resolve_model_path(path, "refine.prompt_path"), encoding="utf-8") as f:
        prompt = f.read().strip()
    if not prompt:
        raise ConfigError(f"refine.prompt_path: {path} is empty")
    return prompt


def make_client(ocfg: DictConfig) -> Any:
    """An ``openai.OpenAI`` client without its own retries (this module retries, counting the tries)."""
    try:
        import openai
    except ImportError as err:
        raise ConfigError("refine.backend: openai needs the openai package: pip install -e '.[curate]'") from err
    key = os.environ.get(ocfg.api_key_env)
    if not key and ocfg.base_url is None:
        raise ConfigError(
            f"refine.openai.api_key_env: the environment variable {ocfg.api_key_env} is not set (the API key)"
        )
    return openai.OpenAI(api_key=key or "unused", base_url=ocfg.base_url, timeout=ocfg.timeout, max_retries=0)


def _retryable(err: BaseException) -> bool:
    import openai

    if isinstance(err, MalformedReply | openai.APITimeoutError | openai.APIConnectionError):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 409, 429) or err.status_code >= 500
    return isinstance(err, openai.APIResponseValidationError | ValueError)


def _reply(response: Any) -> tuple[str, dict[str, int]]:
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as err:
        raise MalformedReply(f"no message in the reply: {err}") from None
    if not isinstance(content, str):
        raise MalformedReply("the reply's message has no text content")
    usage = getattr(response, "usage", None)
    tokens = {
        "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
    }
    return content.strip(), tokens


def call_llm(client: Any, ocfg: DictConfig, prompt: str, text: str, sleep: Callable[[float], None]) -> dict:
    """Refine one text: ``{"text", "usage", "attempts"}``, or ``{"error", "attempts"}`` after the retries."""
    messages = [{"role": "user", "content": f"{prompt}\n\n{text}"}]
    kwargs: dict[str, Any] = {"model": ocfg.model, "messages": messages, "temperature": ocfg.temperature}
    if ocfg.max_tokens is not None:
        kwargs["max_tokens"] = ocfg.max_tokens
    attempts, last_error = 0, ""
    while attempts <= ocfg.max_retries:
        attempts += 1
        try:
            content, usage = _reply(client.chat.completions.create(**kwargs))
            return {"text": content, "usage": usage, "attempts": attempts}
        except Exception as err:  # classified just below; anything else propagates
            if not _retryable(err):
                if type(err).__module__.startswith("openai"):
                    return {"error": f"{type(err).__name__}: {err}", "attempts": attempts}
                raise
            last_error = f"{type(err).__name__}: {err}"
            if attempts <= ocfg.max_retries:
                delay = min(ocfg.max_backoff, ocfg.backoff * 2 ** (attempts - 1))
                logger.info("refine: %s; retrying in %.1fs (try %d)", last_error, delay, attempts + 1)
                sleep(delay)
    return {"error": last_error, "attempts": attempts}


# ----------------------------------------------------------------------------------------------------------
# the step
# ----------------------------------------------------------------------------------------------------------


@dataclass
class RefineReport:
    refined: int = 0
    already_done: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0
    usage: Usage = field(default_factory=Usage)


def backend_settings(rcfg: DictConfig) -> dict[str, Any]:
    if rcfg.backend == "rule":
        return {"backend": "rule"}
    if rcfg.backend == "hf":
        hcfg = rcfg.hf
        if not hcfg.model:
            raise ConfigError("refine.backend: hf needs refine.hf.model (a Hugging Face save_pretrained folder)")
        return {
            "backend": "hf",
            "model": os.path.abspath(resolve_model_path(hcfg.model, "refine.hf.model")),
            "llm_family": hcfg.llm_family,
            "template": hcfg.template,
            "stop": hcfg.stop,
            "max_new_tokens": hcfg.max_new_tokens,
            "dtype": hcfg.dtype,
            "prompt": read_prompt(rcfg.prompt_path),
        }
    ocfg = rcfg.openai
    return {
        "backend": "openai",
        "model": ocfg.model,
        "base_url": ocfg.base_url,
        "temperature": ocfg.temperature,
        "max_tokens": ocfg.max_tokens,
        "prompt": read_prompt(rcfg.prompt_path),
    }


def input_version(record: dict[str, Any], which: str) -> str | None:
    """The text version ``refine.input`` names for this record (None when it has no such text)."""
    latest = record.get("latest") or {}
    version = latest.get("refine" if which == STEP else "generate")
    return version if version in (record.get("texts") or {}) else None


def pending(store: Store, rcfg: DictConfig, settings: dict[str, Any], report: RefineReport) -> Iterator[tuple]:
    for record in list(store):
        source = input_version(record, rcfg.input)
        if source is None:
            report.skipped += 1
            continue
        version = settings_key(STEP, {**settings, "input": source})
        if version in record.get("texts", {}):
            report.already_done += 1
            if store.latest(record["id"], STEP) != version:
                store.append([{"id": record["id"], "latest": {STEP: version}}])
            continue
        yield record["id"], source, version, record["texts"][source]["text"]


def _entry(source: str, settings: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"step": STEP, "input": source, "settings": settings, **fields, "time": now()}


def _text_line(record_id: str, version: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The store line of a refined text: the version and the record's latest refine pointing at it."""
    return {"id": record_id, "texts": {version: entry}, "latest": {STEP: version}}


def _failure_line(record_id: str, version: str, error: str, attempts: int) -> dict[str, Any]:
    """The store line of a failed refine (the next run tries the record again)."""
    failure = {"error": error, "attempts": attempts, "time": now()}
    return {"id": record_id, "failures": {version: failure}, "latest": {STEP: version}}


def run_refine(cfg: DictConfig, store: Store, sleep: Callable[[float], None] = time.sleep) -> RefineReport:
    """Refine every record's input text that has no refined version for these settings yet."""
    rcfg = cfg.refine
    settings = backend_settings(rcfg)
    report = RefineReport()
    todo = list(pending(store, rcfg, settings, report))
    logger.info("refine (%s): %d to do, %d already done", rcfg.backend, len(todo), report.already_done)
    if rcfg.backend == "rule":
        for record_id, source, version, text in todo:
            cleaned, changes = rule_clean(text)
            entry = _entry(source, settings, backend="rule", text=cleaned, changes=changes)
            store.append([_text_line(record_id, version, entry)])
            report.refined += 1
        return report
    if rcfg.backend == "hf":
        _refine_hf(rcfg, store, todo, settings, report)
        return report
    _refine_openai(rcfg, store, todo, settings, report, sleep)
    return report


def _refine_openai(
    rcfg: DictConfig, store: Store, todo: list[tuple], settings: dict, report: RefineReport, sleep: Callable
) -> None:
    ocfg = rcfg.openai
    client = make_client(ocfg)
    prompt = settings["prompt"]
    with ThreadPoolExecutor(max_workers=ocfg.concurrency) as pool:
        futures: dict[Future, tuple] = {}
        queue = iter(todo)
        for item in queue:  # keep at most `concurrency` calls in flight
            futures[pool.submit(call_llm, client, ocfg, prompt, item[3], sleep)] = item
            if len(futures) >= ocfg.concurrency:
                break
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                record_id, source, version, _ = futures.pop(future)
                result = future.result()
                report.usage.requests += result["attempts"]
                if "error" in result:
                    line = _failure_line(record_id, version, result["error"], result["attempts"])
                    report.failed.append(record_id)
                else:
                    cost = report.usage.add(result["usage"], ocfg.price_input, ocfg.price_output)
                    entry = _entry(
                        source,
                        settings,
                        backend="openai",
                        model=ocfg.model,
                        text=result["text"],
                        usage=result["usage"],
                        attempts=result["attempts"],
                        cost=cost,
                    )
                    line = _text_line(record_id, version, entry)
                    report.refined += 1
                store.append([line])
                nxt = next(queue, None)
                if nxt is not None:
                    futures[pool.submit(call_llm, client, ocfg, prompt, nxt[3], sleep)] = nxt
    u = report.usage
    logger.info(
        "refine (openai %s): %d refined, %d failed; %d requests, %d prompt + %d completion tokens, cost %.4f",
        ocfg.model,
        report.refined,
        len(report.failed),
        u.requests,
        u.prompt_tokens,
        u.completion_tokens,
        u.cost,
    )


# ----------------------------------------------------------------------------------------------------------
# the local Hugging Face backend
# ----------------------------------------------------------------------------------------------------------


class LocalLLM:
    """A causal LM and its tokenizer from a ``save_pretrained`` folder, loaded by the project's LLM family table
    (:mod:`minigpt4.models.llm_families`), answering batches of chat messages greedily."""

    def __init__(self, hcfg: DictConfig) -> None:
        import torch

        from minigpt4.models.llm_families import get_llm_family, load_causal_lm, load_tokenizer

        family = get_llm_family(hcfg.llm_family)
        path = resolve_model_path(hcfg.model, "refine.hf.model")
        self.device = torch.device(hcfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = load_tokenizer(family, path)
        dtype = getattr(torch, hcfg.dtype)
        self.model = load_causal_lm(family, path, dtype=dtype).to(self.device).eval()
        self.max_new_tokens = int(hcfg.max_new_tokens)
        self.template, self.stop = hcfg.template, hcfg.stop
        logger.info("refine (hf): %s %s on %s (%s)", family.name, path, self.device, hcfg.dtype)

    def prompt_ids(self, message: str) -> list[int]:
        """The token ids of one user message and the start of the answer."""
        tok = self.tokenizer
        if self.template:
            return list(tok(self.template.replace("{}", message)).input_ids)
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True)
            return list(ids if isinstance(ids, list) else ids["input_ids"])
        return list(tok(f"{message}\n").input_ids)

    def answer(self, messages: list[str]) -> list[dict[str, Any]]:
        """``{"text", "usage"}`` per message: greedy, left-padded into one batch."""
        import torch

        prompts = [self.prompt_ids(m) for m in messages]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        results, eos = [], self.tokenizer.eos_token_id
        for prompt, row in zip(prompts, out[:, width:].tolist()):
            new = row[: row.index(eos)] if eos in row else [t for t in row if t != pad]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if self.stop and self.stop in text:
                text = text[: text.index(self.stop)]
            text = text.strip()
            results.append({"text": text, "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(new)}})
        return results


def _refine_hf(rcfg: DictConfig, store: Store, todo: list[tuple], settings: dict, report: RefineReport) -> None:
    """Refine ``todo`` in batches of ``refine.hf.batch_size``; each batch's lines are appended when it is done."""
    hcfg = rcfg.hf
    if not todo:
        return
    llm = LocalLLM(hcfg)
    prompt = settings["prompt"]
    for start in range(0, len(todo), hcfg.batch_size):
        batch = todo[start : start + hcfg.batch_size]
        try:
            results = llm.answer([f"{prompt}\n\n{text}" for *_, text in batch])
        except (RuntimeError, ValueError) as err:  # e.g. out of memory: these records fail, the next run retries
            results = [{"error": f"{type(err).__name__}: {err}"}] * len(batch)
        lines = []
        for (record_id, source, version, _), result in zip(batch, results):
            if "error" in result:
                lines.append(_failure_line(record_id, version, result["error"], 1))
                report.failed.append(record_id)
                continue
            report.usage.add(result["usage"], 0.0, 0.0)
            entry = _entry(source, settings, backend="hf", model=settings["model"], text=result["text"],
                           usage=result["usage"])  # fmt: skip
            lines.append(_text_line(record_id, version, entry))
            report.refined += 1
        store.append(lines)
        logger.info("refine (hf): %d / %d", min(start + len(batch), len(todo)), len(todo))
    u = report.usage
    logger.info(
        "refine (hf): %d refined, %d failed; %d prompt + %d completion tokens",
        report.refined,
        len(report.failed),
        u.prompt_tokens,
        u.completion_tokens,
    )
