"""``demo.py`` is thin and import-safe; its options and their defaults."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from minigpt4.cli import web
from tests.cli.demo_process import clean_env, demo_command, running_demo
from tests.cli.tiny_chat import write_tiny_eval_config

REPO = Path(__file__).resolve().parents[2]


def test_import_loads_nothing():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('demo', {str(REPO / 'demo.py')!r})\n"
        "demo = importlib.util.module_from_spec(spec); spec.loader.exec_module(demo)\n"
        "assert callable(demo.main)\n"
        "heavy = [m for m in ('gradio', 'torch', 'transformers', 'minigpt4') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_defaults_are_local_and_private():
    args = web.parse_args(["--cfg-path", "x.yaml"])
    assert (args.host, args.port, args.share, args.concurrency) == ("127.0.0.1", 7860, False, 1)
    assert args.device is None and args.gpu_id == 0 and args.options is None
    args = web.parse_args(["--cfg-path", "x.yaml", "--options", "model.ckpt=a", "run.seed=1", "--share"])
    assert args.options == ["model.ckpt=a", "run.seed=1"] and args.share


def test_main_help(capsys):
    spec = importlib.util.spec_from_file_location("demo_entry", REPO / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    assert "--cfg-path" in capsys.readouterr().out


def test_missing_checkpoint_is_refused(tmp_path):
    from minigpt4.cli.common import load_chat

    cfg = tmp_path / "no_ckpt.yaml"
    paths = "  llama_model: x\n  vit_path: y\n  q_former_model: z\n"
    cfg.write_text("model:\n  arch: mini_gpt4\n  model_type: pretrain_vicuna0\n  ckpt: null\n" + paths)
    with pytest.raises(SystemExit, match="model.ckpt"):
        load_chat(web.parse_args(["--cfg-path", str(cfg)]))


# Run as ``python guard.py RECORD demo.py ARGS...``: records (and refuses) every attempt of the demo process to
# resolve or connect to an address off this machine, and the analytics setting Gradio was imported with.
SOCKET_GUARD = r"""
import ipaddress, json, os, runpy, sys

record_path, script = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
LOCAL_NAMES = {None, "", "localhost", b"localhost"}


def is_local(host):
    if host in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
    except ValueError:
        return False  # a host name: resolving it asks a DNS server
    return address.is_loopback or address.is_unspecified


def write(entry):
    with open(record_path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def guard(event, args):
    if event == "import" and args[0] == "gradio" and "gradio" not in sys.modules:
        write({"gradio_imported_with": os.environ.get("GRADIO_ANALYTICS_ENABLED")})
    host = None
    if event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
        host = args[1][0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0]
    else:
        return
    if not is_local(host):
        write({"event": event, "host": str(host)})
        raise PermissionError(f"test guard: no connection off the machine ({host})")


sys.addaudithook(guard)
runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="module")
def launched_demo(tmp_path_factory):
    """``demo.py`` started as a user would (no Gradio or Hub variable set), guarded, serving two requests."""
    root = tmp_path_factory.mktemp("private_demo")
    cfg = write_tiny_eval_config(root)
    guard, record, log = root / "guard.py", root / "connections.jsonl", root / "demo.log"
    guard.write_text(SOCKET_GUARD)
    command = [sys.executable, str(guard), str(record), *demo_command(cfg)[1:]]
    # Gradio's start-up lines end with a hint about a public link (Gradio's or ours): launch() is done then
    with running_demo(command, clean_env(), log, ready_text="To create a public link") as url:
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            config = json.load(response)
    entries = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return {"config": config, "entries": entries, "output": log.read_text()}


def test_launched_demo_sends_nothing_off_the_machine(launched_demo):
    entries = launched_demo["entries"]
    assert [e for e in entries if "event" in e] == [], launched_demo["output"][-3000:]
    assert {"gradio_imported_with": "False"} in entries  # the analytics variable is set before Gradio loads
    assert launched_demo["config"]["analytics_enabled"] is False


def test_launched_demo_names_our_share_option(launched_demo):
    output = launched_demo["output"]
    assert "Running on local URL" in output
    assert "share=True" not in output and "launch()" not in output
    assert "To create a public link, start again with --share." in output
