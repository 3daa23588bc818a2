"""Convert a BLIP synthetic-caption JSON (a list of ``{"url": ..., "caption": ...}``) to an img2dataset TSV.

The published files are ``ccs_synthetic_filtered_large.json`` (CC3M + CC12M + SBU) and
``laion_synthetic_filtered_large.json`` (LAION-115M). The output has a ``url`` and a ``caption`` column;
tabs and line breaks inside captions become spaces so that every row stays one TSV line. Large files are
streamed with ``ijson`` when it is installed (``pip install ijson``), else loaded with ``json``.

Usage: python convert_blip_json.py INPUT.json [OUTPUT.tsv]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

COLUMNS = ("url", "caption")
_BREAKS = re.compile(r"[\t\r\n]+")


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of the top-level JSON list, streamed when ``ijson`` is available."""
    try:
        import ijson
    except ImportError:
        ijson = None
    if ijson is not None:
        with open(path, "rb") as f:
            yield from ijson.items(f, "item")
        return
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{'url', 'caption'}} objects")
    yield from data


def clean(value: Any) -> str:
    return _BREAKS.sub(" ", str(value)).strip()


def convert(src: Path, dst: Path) -> tuple[int, int]:
    """Write the TSV; returns (rows written, records skipped for lacking a url or a caption)."""
    written = skipped = 0
    with open(dst, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(COLUMNS) + "\n")
        for record in iter_records(src):
            url, caption = (clean(record.get(k, "")) if isinstance(record, dict) else "" for k in COLUMNS)
            if not url or not caption:
                skipped += 1
                continue
            out.write(f"{url}\t{caption}\n")
            written += 1
    return written, skipped


def main(argv: Sequence[str] | None = None, default_input: str | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?" if default_input else None, default=default_input, help="BLIP caption JSON")
    parser.add_argument("output", nargs="?", default=None, help="TSV to write (default: INPUT with .tsv)")
    args = parser.parse_args(argv)
    src = Path(args.input)
    dst = Path(args.output) if args.output else src.with_suffix(".tsv")
    written, skipped = convert(src, dst)
    print(f"{dst}: {written} rows" + (f" ({skipped} records without url or caption skipped)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
