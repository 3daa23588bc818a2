"""A curation step run as a subprocess and killed with SIGKILL mid-way, for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])


def store_lines(store: Path) -> int:
    return store.read_text().count("\n") if store.is_file() else 0


def kill_step_at(step: str, cfg: str, store: Path, lines: int) -> int:
    """Run ``python -m minigpt4.cli.curate STEP --cfg-path CFG``, SIGKILL it as soon as ``store`` holds ``lines``
    lines (or when it has ended by itself); its return code (``-SIGKILL`` when it was killed)."""
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "minigpt4.cli.curate", step, "--cfg-path", cfg],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while proc.poll() is None and store_lines(store) < lines:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode
