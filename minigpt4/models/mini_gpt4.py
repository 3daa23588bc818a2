"""MiniGPT-4: a frozen EVA ViT (+ frozen Q-Former) and a frozen LLaMA/Vicuna joined by one trainable projection.

Per sample the LLM sees ``[bos][text before <ImageHere>][image tokens][text after][answer + end_sym][pad...]``;
the loss is the LLM's next-token loss over the answer tokens only (see ``shared/reference/README.md``).
"""

from __future__ import annotations

import importlib.util
import logging
import random
from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import Tensor, nn

from minigpt4.common.config import bounded, path_field
from minigpt4.common.constants import IGNORE_INDEX, IMAGE_PLACEHOLDER, LLAMA2_PATCH_GROUP
from minigpt4.common.registry import registry
from minigpt4.models.base_model import freeze, resolve_model_path
from minigpt4.models.blip2 import Blip2Base, qformer_sizes, read_blip2_state, vit_sizes
from minigpt4.models.eva_vit import VIT_PRECISIONS
from minigpt4.models.llm_attention import check_attn_implementation
from minigpt4.models.llm_families import get_llm_family, load_causal_lm, load_tokenizer, model_type_configs
from minigpt4.models.sequence_builder import SequenceBuilder
from minigpt4.models.weights import covers

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
#: ``model.low_resource`` needs CUDA and these packages: the "8bit" extra of pyproject.toml
LOW_RESOURCE_EXTRA = "8bit"
LOW_RESOURCE_PACKAGES = ("bitsandbytes", "accelerate")


@dataclass
class MiniGPT4Config:
    """Every key of the ``model`` section and its default (the published ``minigpt4_vicuna0.yaml`` values)."""

    arch: str = "mini_gpt4"
    model_type: str = "pretrain_vicuna0"

    # vision encoder (EVA ViT-G/14 unless the vit_* sizes are overridden)
    vit_model: str = "eva_clip_g"
    vit_path: str = path_field(MISSING)  # local eva_vit_g.pth
    image_size: int = bounded(224, gt=0)
    drop_path_rate: float = bounded(0.0, ge=0, lt=1)
    use_grad_checkpoint: bool = False
    vit_precision: str = "fp16"  # fp16 (published, CPU too) | bf16 | fp32: dtype of the frozen ViT conv/linear weights
    freeze_vit: bool = True
    # build the frozen ViT and Q-Former on the meta device and fill them from vit_path / q_former_model in their
    # final dtypes (one copy of the weights, no random init; minigpt4/models/weights.py). False: random init, then
    # load over it, as published. The weights are the same either way
    low_memory_build: bool = True
    vit_width: int = 1408
    vit_depth: int = 39
    vit_heads: int = 16
    vit_mlp_dim: int = 6144
    vit_patch_size: int = 14

    # Q-Former (BLIP-2); without it (LLaMA-2 variant) 4 neighbouring ViT tokens are concatenated instead
    has_qformer: bool = True
    q_former_model: Optional[str] = path_field(None)  # local BLIP-2 checkpoint ({"model": ...}); None: random init
    freeze_qformer: bool = True
    num_query_token: int = bounded(32, gt=0)
    qformer_hidden_size: int = 768
    qformer_num_layers: int = 12
    qformer_num_heads: int = 12
    qformer_intermediate_size: int = 3072
    cross_attention_freq: int = 2

    # language model: a Hugging Face folder of the family ``llm_family`` (see ``minigpt4/models/llm_families.py``)
    llama_model: str = path_field(MISSING)
    llm_family: str = "llama"  # llama (Vicuna, LLaMA-2) | qwen2
    torch_dtype: str = "float16"  # float16 | bfloat16 | float32
    low_resource: bool = False  # 8-bit LLM (bitsandbytes, CUDA)
    device_8bit: int = 0
    lora_r: int = bounded(0, ge=0)  # > 0: LoRA adapters on the LLM, trained with llama_proj
    lora_alpha: int = 16
    lora_dropout: float = bounded(0.05, ge=0, lt=1)
    lora_target_modules: List[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    llm_grad_checkpoint: bool = False
    attn_implementation: str = "sdpa"  # the LLM's attention: sdpa | eager | flash_attention_2 (see llm_attention.py)
    # the LM head (hidden x vocab) only at positions that predict an answer token: the same loss, less compute
    # and memory; False applies it to every position (image and prompt too), as published
    sparse_lm_head: bool = True

    # text
    prompt_path: str = path_field("")  # file of instructions containing <ImageHere> ("" = stage 1, no instruction)
    prompt_template: str = ""  # e.g. "###Human: {} ###Assistant: "
    max_txt_len: int = bounded(32, gt=0)
    end_sym: str = "\n"
    # the chat template (a name registered in ``minigpt4/conversation/templates.py``): vicuna0 | llama2 | qwen2
    conv_template: str = "vicuna0"

    # a trained MiniGPT-4 checkpoint ({"model": {...}}) loaded non-strictly after building
    ckpt: Optional[str] = path_field(None)


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def load_prompts(path: str, template: str) -> list[str]:
    """Instructions of ``path`` that contain ``<ImageHere>``, each wrapped by ``template`` (if any)."""
    if not path:
        return []
    path = resolve_model_path(path, "model.prompt_path")
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    prompts = [line for line in lines if IMAGE_PLACEHOLDER in line]
    if not prompts:
        raise ValueError(f"model.prompt_path: {path} has no line containing {IMAGE_PLACEHOLDER}")
    wrapped = [template.format(p) if template else p for p in prompts]
    logger.info("loaded %d instructions from %s; e.g. %r", len(wrapped), path, wrapped[0])
    return wrapped


def warn_if_fp16_is_slow_here(setting: str, faster: str) -> None:
    """Warn when fp16 weights will run on a CPU that has no fp16 matrix unit.

    Torch runs every fp16 op the model needs on a CPU (conv, linear, layer norm with fp32 parameters, SDPA,
    autocast), so ``setting`` is honoured; but without AMX-FP16 those kernels are several times slower than fp32
    and bf16 (BENCHMARKS.md). The model is built on the CPU and moved afterwards, so "no CUDA here" is the sign.
    """
    if torch.cuda.is_available() or torch.cpu._is_amx_fp16_supported():
        return
    logger.warning(
        "%s without CUDA: the weights stay fp16 and run on the CPU, but this CPU has no AMX-FP16 unit, so fp16 "
        "matmuls and convolutions run several times slower than fp32 or bf16; for CPU use set %s",
        setting,
        faster,
    )


# ----------------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------------


@registry.register_model("minigpt4")
@registry.register_model("mini_gpt4")
class MiniGPT4(Blip2Base):
    """MiniGPT-4 (arch ``mini_gpt4``, alias ``minigpt4``).

    Args:
        cfg: the validated ``model`` section (see :class:`MiniGPT4Config`; a partial dict is completed with its
            defaults).
    """

    config_schema = MiniGPT4Config
    PRETRAINED_MODEL_CONFIG_DICT = model_type_configs()  # the model types of every LLM family
    DEFAULT_MODEL_TYPE = "pretrain_vicuna0"

    def __init__(self, cfg: DictConfig | MiniGPT4Config | dict[str, Any]) -> None:
        super().__init__()
        cfg = OmegaConf.merge(OmegaConf.structured(MiniGPT4Config), cfg)
        self.cfg = cfg
        self.has_qformer = cfg.has_qformer
        self.max_txt_len = cfg.max_txt_len
        self.end_sym = cfg.end_sym
        self.prompt_template = cfg.prompt_template
        vit_precision = cfg.vit_precision
        if vit_precision == "fp16":
            warn_if_fp16_is_slow_here("model.vit_precision: fp16", "model.vit_precision=bf16")

        self._build_vision(cfg, vit_precision)
        self.llama_tokenizer, self.llama_model = self._build_llm(cfg)
        # maybe_autocast(): the LLM's half dtype, else the ViT's half dtype (LAVIS: fp16), else off (fp32 models)
        half = self.llm_dtype in (torch.float16, torch.bfloat16)
        self.autocast_dtype = self.llm_dtype if half else VIT_PRECISIONS[vit_precision]
        in_width = cfg.qformer_hidden_size if self.has_qformer else cfg.vit_width * LLAMA2_PATCH_GROUP
        self.llama_proj = nn.Linear(in_width, self.llama_model.config.hidden_size)
        self.prompt_list = load_prompts(cfg.prompt_path, cfg.prompt_template)
        self.sequences = SequenceBuilder(self.llama_tokenizer, self.embed_tokens)

    # construction -------------------------------------------------------------------------------------------
    def _build_vision(self, cfg: DictConfig, vit_precision: str) -> None:
        self.visual_encoder, self.ln_vision = self.init_vision_encoder(
            cfg.vit_model,
            cfg.image_size,
            cfg.drop_path_rate,
            cfg.use_grad_checkpoint,
            vit_precision,
            path=cfg.vit_path,
            low_memory=cfg.low_memory_build,
            **vit_sizes(cfg),
        )
        if cfg.freeze_vit:
            freeze(self.visual_encoder)
            freeze(self.ln_vision)
            logger.info("vision encoder frozen")
        self.Qformer, self.query_tokens = None, None
        if not self.has_qformer:
            return
        state, path, on_meta = None, None, False
        if cfg.q_former_model:
            path = resolve_model_path(cfg.q_former_model, "model.q_former_model")
            state = read_blip2_state(path)
        if state is not None and cfg.low_memory_build:
            expected = [f"Qformer.{k}" for k in self.meta_qformer(cfg)[0].state_dict()] + ["query_tokens"]
            lacking = covers(expected, state)
            on_meta = not lacking
            if lacking:
                logger.info(
                    "%s lacks %d Q-Former tensors (%s): building the Q-Former with random weights first",
                    path,
                    len(lacking),
                    ", ".join(lacking[:3]),
                )
        self.Qformer, self.query_tokens = self.init_Qformer(
            cfg.num_query_token,
            self.visual_encoder.num_features,
            cfg.cross_attention_freq,
            device="meta" if on_meta else None,
            **qformer_sizes(cfg),
        )
        if state is not None:
            self.load_from_pretrained(path, state=state, assign=on_meta)
        else:
            logger.warning("model.q_former_model is not set: the Q-Former keeps its random initialisation")
        if cfg.freeze_qformer:
            freeze(self.Qformer)
            self.query_tokens.requires_grad_(False)
            logger.info("Q-Former frozen")

    def _build_llm(self, cfg: DictConfig) -> tuple[Any, nn.Module]:
        """The tokenizer and the frozen LLM of ``cfg.llm_family`` (with LoRA / gradient checkpointing when
        configured); the family says which classes load the folder and how its tokenizer pads."""
        family = get_llm_family(cfg.llm_family)
        path = resolve_model_path(cfg.llama_model, "model.llama_model")
        tokenizer = load_tokenizer(family, path)

        dtype = TORCH_DTYPES[self._check_choice("torch_dtype", cfg.torch_dtype, TORCH_DTYPES)]
        if dtype == torch.float16:
            warn_if_fp16_is_slow_here("model.torch_dtype: float16", "model.torch_dtype=bfloat16")
        kwargs: dict[str, Any] = {
            "dtype": dtype,
            "attn_implementation": check_attn_implementation(cfg.attn_implementation),
        }
        if cfg.low_resource:
            kwargs.update(self._low_resource_kwargs(cfg.device_8bit))
        llama_model = load_causal_lm(family, path, **kwargs)
        self.llm_dtype = dtype
        logger.info("loaded the %s LLM from %s (%s)", family.name, path, dtype)

        # LoRA dropout and HF gradient checkpointing only act in train mode: keep it switchable then
        freeze(llama_model, eval_mode=not (cfg.lora_r > 0 or cfg.llm_grad_checkpoint))
        if cfg.llm_grad_checkpoint:
            self._enable_llm_checkpointing(llama_model)
        if cfg.lora_r > 0:
            llama_model = self._add_lora(llama_model, cfg)
        return tokenizer, llama_model

    @staticmethod
    def _enable_llm_checkpointing(llama_model: nn.Module) -> None:
        """Activation checkpointing in the frozen LLM; gradients still reach the image tokens (and llama_proj)."""
        options = {"use_reentrant": False}
        if hasattr(llama_model, "activation_checkpointing_enable"):  # transformers >= 5
            llama_model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            llama_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        llama_model.enable_input_require_grads()

    @staticmethod
    def _add_lora(llama_model: nn.Module, cfg: DictConfig) -> nn.Module:
        """Wrap the LLM with trainable peft LoRA adapters on ``cfg.lora_target_modules``."""
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        llama_model = get_peft_model(llama_model, lora)
        n = sum(p.numel() for p in llama_model.parameters() if p.requires_grad)
        logger.info("LoRA (r=%d) on %s: %d trainable LLM parameters", cfg.lora_r, list(cfg.lora_target_modules), n)
        return llama_model

    @staticmethod
    def _low_resource_kwargs(device_8bit: int) -> dict[str, Any]:
        missing = [name for name in LOW_RESOURCE_PACKAGES if importlib.util.find_spec(name) is None]
        if not torch.cuda.is_available():
            missing.append("a CUDA GPU")
        if missing:
            raise RuntimeError(
                "model.low_resource: true loads the LLM in 8 bits, which needs a CUDA GPU and the "
                f"{' and '.join(LOW_RESOURCE_PACKAGES)} packages of the {LOW_RESOURCE_EXTRA!r} extra "
                f'(pip install -e ".[{LOW_RESOURCE_EXTRA}]"); missing here: {", ".join(missing)}. '
                "Install them on a GPU machine or set model.low_resource: false"
            )
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "device_map": {"": device_8bit}}

    @staticmethod
    def _check_choice(key: str, value: str, choices: dict[str, Any]) -> str:
        if value not in choices:
            raise ValueError(f"model.{key}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    @classmethod
    def from_config(cls, cfg: DictConfig | dict[str, Any]) -> MiniGPT4:
        """Build from the ``model`` section, then load ``cfg.ckpt`` (if set) non-strictly."""
        model = cls(cfg)
        if model.cfg.ckpt:
            logger.info("loading the MiniGPT-4 checkpoint %s", model.cfg.ckpt)
            model.load_checkpoint(model.cfg.ckpt)
        return model

    # checkpoints --------------------------------------------------------------------------------------------
    def _mismatch_hint(self, mismatched: list[str]) -> str:
        hidden = self.llama_model.config.hidden_size
        if any(m.startswith("llama_proj.") for m in mismatched):
            return (
                f"llama_proj maps image features to the LLM width ({hidden} for model.llama_model). A different "
                "width means the checkpoint was trained with another LLM size (Vicuna/LLaMA 7B: 4096, 13B: 5120) "
                "or the other variant (with Q-Former: 768 inputs; LLaMA-2 without Q-Former: 4 x ViT width): use "
                "the checkpoint that matches model.llama_model and model.model_type."
            )
        return super()._mismatch_hint(mismatched)

    def compile_networks(self, **options: Any) -> list[str]:
        """``torch.compile`` (in place) the networks the forward pass calls: the ViT, the Q-Former's BERT and the
        LLM decoder (the tokenizer, the splicing and the LM head stay eager). Returns their names."""
        llm = self.causal_lm
        networks = {"visual_encoder": self.visual_encoder, "llama_model.model": llm.model}
        if self.Qformer is not None:
            networks["Qformer.bert"] = self.Qformer.bert
        for module in networks.values():
            module.compile(**options)
        return list(networks)

    # forward ------------------------------------------------------------------------------------------------
    @property
    def causal_lm(self) -> nn.Module:
        """The causal LM itself (inside the peft wrapper when LoRA is on; its layers carry the adapters)."""
        return self.llama_model.get_base_model() if hasattr(self.llama_model, "get_base_model") else self.llama_model

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """LLM input embeddings of token ids (works with and without LoRA)."""
        return self.llama_model.get_input_embeddings()(ids)

    def encode_img(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Images ``[B, 3, H, W]`` -> LLM-space image tokens ``[B, N, D_llm]`` and their attention mask ``[B, N]``."""
        image = image.to(self.device)
        with self.maybe_autocast():
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.freeze_vit):
                image_embeds = self.ln_vision(self.visual_encoder(image))  # [B, 1 + P, W]
            if self.has_qformer:
                with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.freeze_qformer):
                    query_tokens = self.query_tokens.expand(image_embeds.shape[0], -1, -1)  # [B, Q, C]
                    image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image.device)
                    query_output = self.Qformer.bert(
                        query_embeds=query_tokens,
                        encoder_hidden_states=image_embeds,
                        encoder_attention_mask=image_atts,
                        return_dict=True,
                    )
                features = query_output.last_hidden_state  # [B, Q, C]
            else:
                patches = image_embeds[:, 1:, :]  # [B, P, W] (class token dropped)
                B, P, W = patches.shape
                if P % LLAMA2_PATCH_GROUP:
                    raise ValueError(f"{P} patch tokens cannot be grouped by {LLAMA2_PATCH_GROUP}")
                features = patches.reshape(B, P // LLAMA2_PATCH_GROUP, W * LLAMA2_PATCH_GROUP)  # [B, P/4, 4W]
            inputs_llama = self.llama_proj(features.to(self.llama_proj.weight.dtype))  # [B, N, D_llm]
        atts_llama = torch.ones(inputs_llama.shape[:-1], dtype=torch.long, device=image.device)
        return inputs_llama, atts_llama

    def _instructions(self, samples: dict[str, Any], batch_size: int) -> list[str]:
        """Per-sample instructions: ``samples["instruction_input"]`` as given, else one random prompt for the batch."""
        if samples.get("instruction_input") is not None:
            instructions = list(samples["instruction_input"])
            if len(instructions) != batch_size:
                raise ValueError(f"{len(instructions)} instructions for {batch_size} images")
            return instructions
        if self.prompt_list:
            return [random.choice(self.prompt_list)] * batch_size
        return [IMAGE_PLACEHOLDER] * batch_size

    def build_inputs(
        self, img_embeds: Tensor, answers: list[str], instructions: list[str]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Splice ``[bos][before][image][after][answer + end_sym]`` per sample, right-padded (the
        :class:`SequenceBuilder` layout; the answer is truncated to ``max_txt_len`` tokens).

        Returns ``inputs_embeds [B, L, D]``, ``attention_mask [B, L]`` and ``labels [B, L]`` (IGNORE_INDEX except
        on answer tokens that are not the pad token).
        """
        answers = [answer + self.end_sym for answer in answers]
        return self.sequences.training_batch(img_embeds, instructions, answers, self.max_txt_len)

    def forward(self, samples: dict[str, Any]) -> dict[str, Tensor]:
        """``{"image": [B,3,H,W], "answer": [str], optional "instruction_input": [str]}`` -> ``{"loss", "num_tokens"}``."""
        img_embeds, _ = self.encode_img(samples["image"])  # [B, N, D]
        answers = list(samples["answer"])
        instructions = self._instructions(samples, len(answers))
        embeds, attention_mask, labels = self.build_inputs(img_embeds, answers, instructions)
        num_tokens = (labels[:, 1:] != IGNORE_INDEX).sum()  # the answer tokens the loss is the mean over
        with self.maybe_autocast():
            if self.cfg.sparse_lm_head:
                return {"loss": self.answer_loss(embeds, attention_mask, labels), "num_tokens": num_tokens}
            outputs = self.llama_model(
                inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, return_dict=True
            )
        return {"loss": outputs.loss, "num_tokens": num_tokens}

    def answer_loss(self, embeds: Tensor, attention_mask: Tensor, labels: Tensor) -> Tensor:
        """Mean next-token cross-entropy over the labelled tokens, with the LM head applied only where needed.

        Equal to ``llama_model(..., labels=labels).loss``, which applies the ``hidden x vocab`` head to every
        position (image tokens and prompt included) and then ignores all but the answer tokens.
        """
        llm = self.causal_lm
        hidden = llm.model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state  # [B, L, D]
        targets = labels[:, 1:]  # position t predicts token t + 1
        keep = targets != IGNORE_INDEX
        logits = llm.lm_head(hidden[:, :-1][keep])  # [N, V], N = labelled tokens in the batch
        return nn.functional.cross_entropy(logits.float(), targets[keep])
