"""The schema of the ``run`` section: task, optimisation, schedule, distribution, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class RunConfig:
    """Every key the ``run`` section accepts, with its default (the one source of truth).

    The names follow the published MiniGPT-4 / LAVIS train configs.
    """

    task: str = "image_text_pretrain"
    runner: str = "runner_base"

    # optimisation and LR schedule
    lr_sched: Optional[str] = "linear_warmup_cosine_lr"
    init_lr: float = 1e-4
    min_lr: float = 0.0
    warmup_lr: float = -1.0  # < 0: start the warmup at init_lr (no warmup)
    warmup_steps: int = 0
    decay_rate: Optional[float] = None  # linear_warmup_step_lr: LR multiplier per epoch
    weight_decay: float = 0.05
    beta2: float = 0.999
    accum_grad_iters: int = 1
    max_grad_norm: Optional[float] = None

    # schedule
    max_epoch: int = 1
    iters_per_epoch: Optional[int] = None  # None: one pass over finite data per epoch
    batch_size_train: int = 1
    batch_size_eval: int = 1
    num_workers: int = 0

    # precision
    amp: bool = False
    amp_dtype: str = "float16"

    # reproducibility and devices
    seed: int = 42
    device: str = "cuda"
    world_size: int = 1
    dist_url: str = "env://"
    distributed: bool = True
    # set by init_distributed_mode from the launcher's environment (not meant to be configured)
    rank: int = 0
    gpu: Optional[int] = None
    dist_backend: Optional[str] = None

    # splits and evaluation
    train_splits: List[str] = field(default_factory=lambda: ["train"])
    valid_splits: List[str] = field(default_factory=list)
    test_splits: List[str] = field(default_factory=list)
    evaluate: bool = False

    # output, logging, checkpoints
    output_dir: str = "output"
    job_name: Optional[str] = None
    log_freq: int = 50
    save_freq: Optional[int] = None
    keep_last: Optional[int] = None
    resume_ckpt_path: Optional[str] = None
    auto_resume: bool = False
    max_consecutive_nonfinite: int = 10
    wandb_log: bool = False
