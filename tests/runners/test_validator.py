"""The validator: token-weighted loss over the whole split, for any eval batch size; several datasets combined."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from minigpt4.runners.validator import Validator, _RankShard
from minigpt4.tasks.image_text_pretrain import ImageTextPretrainTask
from tests.runners.toy import make_runner


class _TokenDataset(Dataset):
    """``n`` samples with 1..4 labelled "tokens" each (``mask``), as answers of different lengths."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.values = torch.randn(n, 4, generator=gen)
        self.mask = torch.arange(4)[None, :] < (torch.arange(n) % 4 + 1)[:, None]

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"value": self.values[index], "mask": self.mask[index]}


class _TokenModel(nn.Module):
    """Loss = mean of ``value ** 2`` over the masked-in tokens of the batch; reports ``num_tokens`` as MiniGPT-4."""

    def forward(self, samples: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = samples["mask"]
        return {"loss": (samples["value"] ** 2)[mask].mean(), "num_tokens": mask.sum()}


def _token_mean(*datasets: _TokenDataset) -> float:
    values = torch.cat([(d.values**2)[d.mask] for d in datasets])
    return values.double().mean().item()


def _validator(datasets, batch_size: int) -> Validator:
    return Validator(ImageTextPretrainTask(), datasets, batch_size, 0, torch.device("cpu"))


def test_loss_is_the_token_weighted_mean_for_any_eval_batch_size():
    data = _TokenDataset(11, seed=0)
    expected = _token_mean(data)
    for batch_size in (1, 3, 4, 11, 16):
        result = _validator({"a": {"val": data}}, batch_size).run(_TokenModel(), ["val"])
        assert result.metrics["a/val"] == pytest.approx(expected, abs=1e-6), batch_size
        assert result.metrics["loss"] == pytest.approx(expected, abs=1e-6)
        assert result.counts["a/val"] == {"num_samples": 11, "num_tokens": int(data.mask.sum())}
    # the sample-weighted mean of per-batch means (what validation reported before) is another number
    batches = [range(i, min(i + 4, 11)) for i in range(0, 11, 4)]
    per_batch = [(data.values[list(b)] ** 2)[data.mask[list(b)]].mean().item() for b in batches]
    sample_weighted = sum(m * len(b) for m, b in zip(per_batch, batches)) / 11
    assert abs(sample_weighted - expected) > 1e-3


def test_several_datasets_are_combined_by_tokens_and_each_is_reported(caplog):
    small, large = _TokenDataset(3, seed=1), _TokenDataset(20, seed=2)
    datasets = {"small": {"val": small, "train": _TokenDataset(5, seed=3)}, "large": {"val": large}}
    result = _validator(datasets, 4).run(_TokenModel(), ["val"])
    assert set(result.metrics) == {"small/val", "large/val", "loss"}
    assert result.metrics["small/val"] == pytest.approx(_token_mean(small), abs=1e-6)
    assert result.metrics["large/val"] == pytest.approx(_token_mean(large), abs=1e-6)
    assert result.metrics["loss"] == pytest.approx(_token_mean(small, large), abs=1e-6)
    unweighted = (result.metrics["small/val"] + result.metrics["large/val"]) / 2
    assert abs(unweighted - result.metrics["loss"]) > 1e-3  # the old plain mean of the datasets' losses
    assert result.weighted_by == "num_tokens"
    text = result.describe()
    assert "mean over all tokens" in text and "small/val" in text and f"{int(large.mask.sum())} tokens" in text


def test_rank_shards_cover_every_sample_once():
    for length in (0, 1, 7, 8):
        for world in (1, 2, 3):
            seen = sorted(i for rank in range(world) for i in _RankShard(length, rank, world))
            assert seen == list(range(length)), (length, world)


def test_runner_logs_how_validation_datasets_are_combined(tmp_path, caplog):
    runner = make_runner(tmp_path, max_epoch=1, valid_splits=["val"])
    with caplog.at_level(logging.INFO, logger="minigpt4.runners.runner_base"):
        runner.train()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("validation after epoch 0"))
    # the toy model reports no token count: its loss is a per-sample mean, weighted by samples
    assert "= mean over all samples of toy/val" in line and "(8 samples)" in line
