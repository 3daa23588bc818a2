"""Logging setup and the progress bar."""

import logging
import math

import pytest

from minigpt4.common import logger as mlog
from minigpt4.common.logger import progress, setup_logger


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


def test_progress_off_without_tty_and_when_asked():
    bar = progress(range(3), desc="x")  # pytest captures stderr: not a TTY
    assert bar.disable and list(bar) == [0, 1, 2]
    assert progress(range(3), disable=True).disable
    on = progress(range(3), disable=False)
    assert not on.disable
    on.close()
    assert math.isclose(sum(progress([0.5, 0.25])), 0.75)
