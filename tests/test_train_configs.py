"""The shipped train configs validate, and save a step checkpoint often enough that a killed job loses minutes
(a fraction of an epoch), with ``keep_last`` bounding the disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from minigpt4.common.config import Config, ConfigError
from minigpt4.runners.runner_base import check_run_config

REPO = Path(__file__).resolve().parents[1]
MODEL_PATHS = ["model.llama_model=llm", "model.vit_path=vit.pth", "model.q_former_model=qf.pth"]
STAGE1_DATA = ["datasets.laion.build_info.storage=/d/{0..1}.tar", "datasets.cc_sbu.build_info.storage=/d/{0..1}.tar"]
STAGE2_DATA = ["model.ckpt=stage1.pth", "datasets.cc_sbu_align.build_info.storage=/d/cc_sbu_align"]

# name -> (options that fill the required paths, published iters_per_epoch, published max_epoch)
SHIPPED = {
    "minigpt4_stage1_pretrain.yaml": (STAGE1_DATA, 5000, 4),
    "minigpt4_llama2_stage1_pretrain.yaml": (STAGE1_DATA, 5000, 4),
    "minigpt4_stage2_finetune.yaml": (STAGE2_DATA, 200, 5),
    "minigpt4_llama2_stage2_finetune.yaml": (STAGE2_DATA, 200, 5),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_train_config_validates_and_saves_by_step(name):
    data, iters, epochs = SHIPPED[name]
    path = REPO / "train_configs" / name
    with pytest.raises(ConfigError, match="is not set"):
        Config.load(path)  # the local paths are ??? (no machine paths)
    run = Config.load(path, [*MODEL_PATHS, *data]).run_cfg
    check_run_config(run)
    assert (run.iters_per_epoch, run.max_epoch) == (iters, epochs)  # the published schedule is untouched
    # several step checkpoints per epoch, evenly spaced
    assert run.save_freq is not None and iters % run.save_freq == 0 and iters // run.save_freq >= 2
    # still valid when fewer GPUs accumulate 2 or 4 batches per optimizer step (README, "Multi-node and clusters")
    for accum in (2, 4):
        run.accum_grad_iters = accum
        check_run_config(run)
    assert run.keep_last is not None and run.keep_last >= 2
