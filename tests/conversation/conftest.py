"""A small stand-in MiniGPT-4 for the chat tests: a random tiny LLaMA, a sentencepiece tokenizer trained on a
few sentences, and an image encoder that pools the image into a few LLM-sized tokens. It has exactly the surface
``Chat`` uses (``encode_img``, ``embed_tokens``, ``llama_model``, ``llama_tokenizer``, ``device``,
``maybe_autocast``)."""

from __future__ import annotations

import contextlib
import random

import pytest
import torch
from torch import nn

WORDS = "a red blue green circle square triangle on the left right top bottom of image small large there is".split()
IMAGE_TOKENS = 4


def train_tokenizer(folder) -> None:
    import sentencepiece as spm

    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(400)]
    lines += ["Human: describe the image Assistant: there is a red circle"] * 20
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=400,
        model_type="bpe",
        user_defined_symbols=["$$", "###", "<Img>", "</Img>", "<ImageHere>", "[INST]", "[/INST]"],
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        byte_fallback=True,
        minloglevel=2,
    )


class TinyChatModel(nn.Module):
    def __init__(self, tokenizer, hidden: int = 32, seed: int = 0) -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        self.llama_model = LlamaForCausalLM(config).eval()
        self.llama_tokenizer = tokenizer
        self.llama_proj = nn.Linear(3, hidden)

    @property
    def device(self) -> torch.device:
        return self.llama_proj.weight.device

    def maybe_autocast(self, dtype=None):
        return contextlib.nullcontext()

    def encode_img(self, image: torch.Tensor):
        pooled = nn.functional.adaptive_avg_pool2d(image, 2).flatten(2).transpose(1, 2)  # [B, 4, 3]
        embeds = self.llama_proj(pooled)  # [B, 4, D]
        return embeds, torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llama_model.get_input_embeddings()(ids)


def to_small_tensor(image):
    from torchvision.transforms import functional as F

    return F.to_tensor(image.convert("RGB").resize((16, 16)))


@pytest.fixture(scope="session")
def chat_tokenizer(tmp_path_factory):
    from transformers import LlamaTokenizer

    folder = tmp_path_factory.mktemp("chat_tokenizer")
    train_tokenizer(folder)
    tokenizer = LlamaTokenizer.from_pretrained(str(folder))
    tokenizer.add_special_tokens({"pad_token": "$$"})
    return tokenizer


@pytest.fixture(scope="session")
def chat_model(chat_tokenizer):
    return TinyChatModel(chat_tokenizer).eval()


@pytest.fixture()
def chat(chat_model):
    from minigpt4.conversation.conversation import Chat

    return Chat(chat_model, to_small_tensor, device="cpu")


@pytest.fixture()
def vis_processor():
    return to_small_tensor


@pytest.fixture()
def image():
    from PIL import Image

    img = Image.new("RGB", (32, 32), (200, 30, 30))
    img.paste((20, 20, 220), (0, 0, 16, 16))
    return img
