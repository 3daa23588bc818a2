"""CC3M + CC12M + SBU: ccs_synthetic_filtered_large.json -> ccs_synthetic_filtered_large.tsv (url, caption) for img2dataset.

Usage: python convert_cc_sbu.py [INPUT.json [OUTPUT.tsv]]   (default input: ./ccs_synthetic_filtered_large.json)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from convert_blip_json import main as convert_main  # noqa: E402

DEFAULT_INPUT = "ccs_synthetic_filtered_large.json"


def main(argv: Sequence[str] | None = None) -> int:
    return convert_main(argv, default_input=DEFAULT_INPUT)


if __name__ == "__main__":
    sys.exit(main())
