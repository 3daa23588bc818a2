"""The pre-flight check: ``python -m minigpt4.cli.check --cfg-path X.yaml [--options k=v ...]``.

Prints one table of OK / WARN / FAIL lines (each WARN and FAIL with its fix) about the config's weights, data
and memory (see :mod:`minigpt4.common.preflight`), before a GPU hour is spent. Reads file headers and one sample
per dataset, never whole weights. Exit code 1 when a line is FAIL, 2 for a config error, else 0. ``train.py``
and ``demo.py`` run the same check at start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from minigpt4.common.config import Config, add_debug_argument, run_entry_point
from minigpt4.common.preflight import run_checks

FAILED_EXIT_CODE = 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m minigpt4.cli.check",
        description="Check a MiniGPT-4 config's weights, data and memory before training or chatting.",
    )
    parser.add_argument("--cfg-path", required=True, help="a train or eval YAML")
    parser.add_argument("--options", nargs="+", default=None, help="override config values: dotted key=value pairs")
    parser.add_argument("--chat", action="store_true", help="check for chatting (demo.py): no data, chat memory")
    parser.add_argument("--no-data", action="store_true", help="do not build the datasets or decode a sample")
    parser.add_argument("--device", default=None, help="the device memory is compared with (default: run.device)")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the checks and print the table on stdout; the exit code (1 if any FAIL)."""
    args = parse_args(argv)
    cfg = Config(args)
    report = run_checks(cfg, train=not args.chat, data=not args.no_data, device=args.device)
    sys.stdout.write(report.table() + "\n")
    sys.stdout.flush()
    return FAILED_EXIT_CODE if report.failures else 0


if __name__ == "__main__":
    sys.exit(run_entry_point(main, prog="minigpt4.cli.check"))
