"""Logging setup, metric meters, the log_every iteration helper and the progress bar."""

import logging
import math

import pytest
import torch

from minigpt4.common import logger as mlog
from minigpt4.common.logger import MetricLogger, SmoothedValue, progress, setup_logger


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def _ours():
    return [h for h in logging.getLogger().handlers if getattr(h, mlog._HANDLER_TAG, False)]


def test_rank0_console_and_files(tmp_path):
    setup_logger(tmp_path, rank=0)
    console = [h for h in _ours() if not isinstance(h, logging.FileHandler)]
    assert len(console) == 1 and console[0].level == logging.INFO
    logging.getLogger("minigpt4.something").info("hello %d", 7)
    for h in _ours():
        h.flush()
    assert "hello 7" in (tmp_path / "log.txt").read_text()
    line = (tmp_path / "log_rank0.txt").read_text()
    assert "hello 7" in line and "[rank 0]" in line and "minigpt4.something" in line


def test_other_ranks_warn_on_console_and_write_own_file(tmp_path):
    setup_logger(tmp_path, rank=3)
    console = [h for h in _ours() if not isinstance(h, logging.FileHandler)]
    assert console[0].level == logging.WARNING
    logging.getLogger("minigpt4.x").info("detail")
    for h in _ours():
        h.flush()
    assert not (tmp_path / "log.txt").exists()
    assert "detail" in (tmp_path / "log_rank3.txt").read_text()


def test_idempotent(tmp_path):
    setup_logger(tmp_path, rank=0)
    setup_logger(tmp_path, rank=0)
    assert len(_ours()) == 3  # console, log_rank0.txt, log.txt
    logging.getLogger("minigpt4.x").info("once")
    for h in _ours():
        h.flush()
    assert (tmp_path / "log.txt").read_text().count("once") == 1


def test_console_only_without_output_dir():
    setup_logger(None, rank=0)
    assert len(_ours()) == 1


def test_smoothed_value():
    v = SmoothedValue(window_size=3)
    for x in [1.0, 2.0, 3.0, 10.0]:
        v.update(x)
    assert v.value == 10.0
    assert v.median == 3.0  # window [2, 3, 10]
    assert v.avg == pytest.approx(5.0)
    assert v.max == 10.0
    assert v.global_avg == pytest.approx(4.0)
    v.update(2.0, n=4)  # weighted
    assert v.global_avg == pytest.approx((16.0 + 8.0) / 8)
    assert str(SmoothedValue()) == "0.0000 (0.0000)"


def test_metric_logger_update_and_format():
    ml = MetricLogger()
    ml.update(loss=torch.tensor(2.0), lr=1e-4)
    ml.update(loss=4.0, skipped=None)
    assert ml.loss.global_avg == pytest.approx(3.0)
    assert "loss:" in str(ml) and "lr:" in str(ml) and "skipped" not in str(ml)
    assert ml.averages() == {"loss": pytest.approx(3.0), "lr": pytest.approx(1e-4)}
    with pytest.raises(AttributeError):
        _ = ml.nope


def test_log_every_yields_everything_and_logs_eta(caplog):
    ml = MetricLogger(log=logging.getLogger("minigpt4.test"))
    with caplog.at_level(logging.INFO, logger="minigpt4.test"):
        seen = []
        for i in ml.log_every(range(5), print_freq=2, header="Train: epoch [0]"):
            ml.update(loss=float(i))
            seen.append(i)
    assert seen == [0, 1, 2, 3, 4]
    lines = [r.getMessage() for r in caplog.records]
    progress_lines = [line for line in lines if "eta:" in line]
    assert len(progress_lines) == 3  # items 0, 2 and the last one (4)
    assert progress_lines[-1].startswith("Train: epoch [0] [4/5]")
    assert "total time" in lines[-1]


def test_log_every_stops_an_endless_iterator_at_total():
    def endless():
        n = 0
        while True:
            yield n
            n += 1

    ml = MetricLogger()
    assert list(ml.log_every(endless(), print_freq=100, total=7)) == list(range(7))


def test_progress_off_without_tty_and_when_asked():
    bar = progress(range(3), desc="x")  # pytest captures stderr: not a TTY
    assert bar.disable and list(bar) == [0, 1, 2]
    assert progress(range(3), disable=True).disable
    on = progress(range(3), disable=False)
    assert not on.disable
    on.close()
    assert math.isclose(sum(progress([0.5, 0.25])), 0.75)
