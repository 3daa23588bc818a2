"""Chat latency: time to first token and decode tokens/s over three successive turns, with and without reuse of
the conversation's key/value cache (``Chat(..., reuse_cache=True/False)``), and with the cache but the published
re-tokenization of earlier answers (``keep_answer_ids=False``).

    python -m bench.chat_bench --config bench_small --assets DIR --json-out out.json

Random weights would stop anywhere, so every answer is forced to the same length: greedy decoding,
``min_new_tokens = max_new_tokens`` (no early end of sequence) and the separator token banned (no stop string),
so both modes do exactly the same amount of decoding and differ only in how much context they prefill.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.streamers import BaseStreamer

from bench.common import loadavg, maxrss_mib, write_json
from bench.models import build_model

QUESTIONS = (
    "Describe this image in detail.",
    "What colour is the largest object in it?",
    "Write a short story about what happens next in the picture.",
)


class TimingStreamer(BaseStreamer):
    """Records when ``generate`` emits each new token (the first ``put`` is the prompt, ignored)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.token_times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.token_times.append(time.perf_counter())

    def end(self) -> None:
        pass


class TokenizerVocabOnly(LogitsProcessor):
    """Restrict generation to ids the tokenizer can decode.

    The benchmark LLaMAs have a 32000-row head (real cost) but a smaller tokenizer; random weights would otherwise
    pick ids past the tokenizer, which decode to nothing, and the conversation would not grow with the answers.
    """

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.vocab :] = -float("inf")
        return scores


#: (name, reuse_cache, keep_answer_ids): the default chat, no cache, and the cache with the published
#: re-tokenization of earlier answers (the cache then matches only up to the first answer)
MODES = (("reuse_cache", True, True), ("recompute", False, True), ("reuse_cache_retokenized", True, False))


def banned_ids(tokenizer: Any, conv: Any) -> list[list[int]]:
    """Token sequences that could form a stop string (the separator and '#'), banned to force full-length answers."""
    out = []
    for text in [*conv.stop_strings, "#"]:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        if ids:
            out.append(ids[:1])
    return out


def conversation(
    turns: int,
    reuse_cache: bool,
    model: Any,
    vis: Any,
    new_tokens: int,
    keep_answer_ids: bool = True,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    from minigpt4.conversation.conversation import Chat, CONV_VISION_Vicuna0

    chat = Chat(model, vis, device=device, reuse_cache=reuse_cache, keep_answer_ids=keep_answer_ids)
    conv, img_list = CONV_VISION_Vicuna0.copy(), []
    image = torch.zeros(3, model.visual_encoder.image_size, model.visual_encoder.image_size)
    chat.upload_img(image, conv, img_list)
    bad = banned_ids(chat.tokenizer, conv)
    rows = []
    for turn in range(turns):
        chat.ask(QUESTIONS[turn % len(QUESTIONS)], conv)
        cached = getattr(conv, "kv_cache", None)
        probe = conv.copy()
        probe.append_message(probe.roles[1], None)
        embs = chat.context_emb(probe, img_list)
        context, reused = embs.shape[1], 0 if cached is None or not reuse_cache else cached.common_prefix(embs)
        streamer = TimingStreamer()
        answer = chat.answer(
            conv, img_list, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            repetition_penalty=1.0, bad_words_ids=bad, streamer=streamer, max_length=2000,
            logits_processor=LogitsProcessorList([TokenizerVocabOnly(len(chat.tokenizer))]),
        )  # fmt: skip
        end = time.perf_counter()
        tt = streamer.token_times
        rows.append(
            {
                "turn": turn + 1,
                "context_tokens": context,
                "cached_tokens_before": None if cached is None else int(cached.embeds.shape[1]),
                "reused_tokens": reused,
                "answer_words": len(answer.text.split()),
                "ttft_s": tt[0] - streamer.start,
                "new_tokens": len(tt),
                "total_s": end - streamer.start,
                "tokens_per_s": (len(tt) - 1) / (tt[-1] - tt[0]) if len(tt) > 1 else None,
            }
        )
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, cfg = build_model(args.config, args.assets, options=args.set)
    model.eval()
    from minigpt4.common.registry import registry

    vis = registry.get_processor_class("blip2_image_eval").from_config(cfg.preprocess_cfg.vis_processor.eval)
    result: dict[str, Any] = {
        "description": f"{args.config}, random weights, greedy, {args.new_tokens} new tokens forced per turn, "
        f"{args.turns} turns, median of {args.repeats} conversations",
        "config": args.config,
        "options": args.set,
        "llm_dtype": str(model.llama_model.dtype).replace("torch.", ""),
        "new_tokens": args.new_tokens,
        "loadavg": loadavg(),
    }
    conversation(1, True, model, vis, 4)  # warm-up
    for mode, reuse, keep_ids in MODES:
        runs = [conversation(args.turns, reuse, model, vis, args.new_tokens, keep_ids) for _ in range(args.repeats)]
        merged = []
        for i in range(args.turns):
            per = sorted((r[i] for r in runs), key=lambda row: row["ttft_s"])
            merged.append(per[len(per) // 2])
        result[mode] = merged
    result["loadavg_after"] = loadavg()
    result["peak_rss_mib"] = maxrss_mib()
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.chat_bench")
    p.add_argument("--config", default="bench_small")
    p.add_argument("--assets", required=True)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--set", action="append", default=[], help="config option key=value (repeatable)")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    write_json(run(args), args.json_out)


if __name__ == "__main__":
    main()
