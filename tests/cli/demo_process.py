"""``demo.py`` run as a subprocess for the tests: a free loopback port, start-up, and a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, log: Path, ready_text: str = "") -> None:
    """Until ``url`` answers 200 and ``log`` holds ``ready_text``."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"demo.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200 and ready_text in log.read_text():
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"demo.py did not serve {url} within {START_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


@contextlib.contextmanager
def running_demo(command: list[str], env: dict[str, str], log: Path, ready_text: str = "") -> Iterator[str]:
    """Run ``command`` (which starts ``demo.py`` with ``--port PORT`` appended) until the block ends; yields its
    URL once it serves and its output (in ``log``) holds ``ready_text``. The demo is stopped as by Ctrl-C."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=REPO,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, proc, log, ready_text)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def demo_command(cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "demo.py", "--cfg-path", str(cfg), "--device", "cpu", *extra]


def clean_env() -> dict[str, str]:
    """This environment without the Gradio and Hugging Face Hub settings a user would not have set."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_HUB_"))}
