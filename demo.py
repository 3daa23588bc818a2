"""MiniGPT-4 chat demo: ``python demo.py --cfg-path eval_configs/minigpt4_eval.yaml [--gpu-id 0]``.

Options: ``--options key=value ...`` overrides the config, ``--device cpu`` runs without a GPU, ``--host`` /
``--port`` choose where it listens (127.0.0.1:7860), ``--share`` opens a public link. Gradio's usage analytics
are off (``GRADIO_ANALYTICS_ENABLED=True`` turns them back on): nothing leaves the machine unless ``--share`` asks
for it. A configuration error is one line on stderr and exit code 2 (``--debug`` or ``MINIGPT4_DEBUG=1``: the
traceback). The app itself lives in :mod:`minigpt4.cli.web`; importing this file loads nothing.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    from minigpt4.cli.web import main as web_main
    from minigpt4.common.preflight import check_command_line

    check_command_line(argv)  # the pre-flight check (weights, tokenizer, checkpoint, memory) before loading
    web_main(argv)


if __name__ == "__main__":
    import sys

    from minigpt4.common.config import run_entry_point

    sys.exit(run_entry_point(main, prog="demo.py"))
