"""The schema of the ``run`` section: task, optimisation, schedule, distribution, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from minigpt4.common.config import bounded, path_field


@dataclass
class RunConfig:
    """Every key the ``run`` section accepts, with its default (the one source of truth).

    The names follow the published MiniGPT-4 / LAVIS train configs.
    """

    task: str = "image_text_pretrain"
    runner: str = "runner_base"

    # optimisation and LR schedule
    lr_sched: Optional[str] = "linear_warmup_cosine_lr"
    init_lr: float = bounded(1e-4, ge=0)
    min_lr: float = bounded(0.0, ge=0)
    warmup_lr: float = -1.0  # < 0: start the warmup at init_lr (no warmup)
    warmup_steps: int = bounded(0, ge=0)
    decay_rate: Optional[float] = bounded(None, gt=0)  # linear_warmup_step_lr: LR multiplier per epoch
    weight_decay: float = bounded(0.05, ge=0)
    beta2: float = bounded(0.999, ge=0, lt=1)
    accum_grad_iters: int = bounded(1, gt=0)
    max_grad_norm: Optional[float] = bounded(None, gt=0)

    # schedule
    max_epoch: int = bounded(1, gt=0)
    iters_per_epoch: Optional[int] = bounded(None, gt=0)  # None: one pass over finite data per epoch
    batch_size_train: int = bounded(1, gt=0)
    batch_size_eval: int = bounded(1, gt=0)
    num_workers: int = bounded(0, ge=0)

    # precision
    amp: bool = False  # autocast the forward pass (fp16 uses a GradScaler)
    # "float16" (published: with a GradScaler, on CUDA and CPU), "bfloat16" (no scaler) or "auto" (bf16 where the
    # device computes it natively, else fp16 on CUDA and fp32 on a CPU); see minigpt4/runners/precision.py
    amp_dtype: str = "float16"
    # torch.compile the ViT, the Q-Former and the LLM decoder (the model's ``compile_networks``); the first steps
    # are slower while it compiles. False: eager, as published
    compile: bool = False

    # reproducibility and devices
    seed: int = bounded(42, ge=0)
    device: str = "cuda"
    world_size: int = bounded(1, gt=0)
    dist_url: str = "env://"
    distributed: bool = True
    # how the job is spread over ranks: "ddp" (every rank holds the whole model, as published) or "fsdp" (the
    # frozen modules of fsdp_modules sharded with FSDP2; see minigpt4/runners/fsdp.py). A new key: ``distributed``
    # is the published flag that init_distributed_mode sets
    parallelism: str = "ddp"
    fsdp_modules: List[str] = field(default_factory=lambda: ["llama_model"])  # also visual_encoder, Qformer
    # set by init_distributed_mode from the launcher's environment (not meant to be configured)
    rank: int = bounded(0, ge=0)
    gpu: Optional[int] = None
    dist_backend: Optional[str] = None

    # splits and evaluation
    train_splits: List[str] = field(default_factory=lambda: ["train"])
    valid_splits: List[str] = field(default_factory=list)
    test_splits: List[str] = field(default_factory=list)
    evaluate: bool = False
    # an evaluation YAML (what evaluate.py reads: run.task, datasets, evaluation) whose sets the model answers at the
    # end of every epoch, scored as evaluate.py scores them; its metrics are "<dataset>/<split>/<metric>"
    # (e.g. coco_caption/test/CIDEr for run.best_metric, with best_mode max). See minigpt4/runners/generation_validator.py
    valid_generation: Optional[str] = path_field(None)
    # the validation metric that picks checkpoint_best.pth ("loss", "<dataset>/<split>" or "<dataset>/<split>/<metric>")
    best_metric: str = "loss"
    best_mode: str = "min"  # "min": lower best_metric is better; "max": higher

    # output, logging, checkpoints
    # The run folder is ``output_dir/<job id>``; the job id is ``job_name`` or, when it is unset, a timestamp.
    # ``auto_resume`` needs a stable folder, so it requires ``job_name``.
    output_dir: str = "output"
    job_name: Optional[str] = None
    log_freq: int = bounded(50, gt=0)  # iterations between log lines / metrics.jsonl records
    save_freq: Optional[int] = bounded(
        None, gt=0
    )  # iterations between mid-epoch checkpoints (a checkpoint also ends every epoch)
    keep_last: Optional[int] = bounded(
        None, gt=0
    )  # keep only the newest N checkpoint_*.pth (checkpoint_best.pth is always kept)
    resume_ckpt_path: Optional[str] = None  # resume everything (weights, optimizer, schedule, RNG, data) from here
    auto_resume: bool = False  # resume from the newest complete checkpoint in the run folder, if any
    max_consecutive_nonfinite: int = bounded(
        10, gt=0
    )  # stop after this many non-finite losses in a row (each is skipped)
    progress_bar: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True  # TensorBoard scalars under <run folder>/tensorboard
