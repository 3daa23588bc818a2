"""``scripts/quickstart_tiny.sh``: the thread count it gives each step.

The script runs under a stand-in ``$PYTHON`` that answers the script's own ``python -c`` questions with the real
interpreter and records (then refuses) every ``python -m ...`` step, so the test stops at the world build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAND_IN = f"""#!{sys.executable}
import json, os, sys
if sys.argv[1] == "-c":
    os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])
with open(os.environ["STEPS_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "omp": os.environ.get("OMP_NUM_THREADS")}}) + "\\n")
sys.exit(3)
"""


def _first_step(tmp_path: Path, args: list[str], cpus: set[int] | None = None) -> dict:
    stand_in, record = tmp_path / "python", tmp_path / "steps.jsonl"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stand_in), "STEPS_RECORD": str(record)}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "quickstart_tiny.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        timeout=120,
    )
    assert result.returncode == 3, result.stdout + result.stderr  # stopped at the first step
    (step,) = [json.loads(line) for line in record.read_text().splitlines()]
    return step


def test_threads_default_to_the_cpus_the_process_may_use(tmp_path):
    one_cpu = min(os.sched_getaffinity(0))
    step = _first_step(tmp_path, ["5"], cpus={one_cpu})
    assert step["argv"] == [
        "-m",
        "minigpt4.tiny.build",
        "--out",
        "tiny_world",
        "--seed",
        "5",
        "--threads",
        "1",
        "--force",
    ]
    assert step["omp"] == "1"


@pytest.mark.parametrize("args", [["--threads", "3"], ["--threads=3"]])
def test_threads_option_overrides(tmp_path, args):
    step = _first_step(tmp_path, args)
    assert step["argv"][-3:] == ["--threads", "3", "--force"] and "--seed" in step["argv"]
    assert step["argv"][step["argv"].index("--seed") + 1] == "0"
    assert step["omp"] == "3"


def test_bad_threads_is_refused(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "quickstart_tiny.sh"), "--threads", "0"],
        env={**os.environ, "PYTHON": "false"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--threads must be a positive whole number" in result.stderr
