"""Turn your own image-caption pairs into MiniGPT-4 training data.

Inputs (one of):
  --folder DIR   image files (jpg, jpeg, png, webp, bmp, gif, tif, tiff) with a same-name ``.txt`` caption beside
                 each (``cat.jpg`` + ``cat.txt``); searched recursively, sorted by path.
  --jsonl FILE   one ``{"image": path, "caption": text}`` per line; relative paths are relative to the file.

Outputs (``--format``):
  webdataset  stage-1 shards ``OUT/00000.tar ...`` as img2dataset writes them: ``KEY.jpg`` (or .png / .webp,
              bytes kept; other formats re-encoded to JPEG), ``KEY.json`` (``{"caption", "key", "source"}``),
              ``KEY.txt``; use ``OUT/{00000..NNNNN}.tar`` (printed at the end) as ``build_info.storage``.
  align       a stage-2 ``cc_sbu_align``-style folder: ``OUT/filter_cap.json`` + ``OUT/image/<id>.jpg``.

Pairs whose image cannot be decoded or whose caption is empty are skipped and counted.

Usage: python dataset/make_shards.py --folder my_images --out my_shards [--samples-per-shard 10000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
JPEG_QUALITY = 95


def pairs_from_folder(folder: Path) -> Iterator[tuple[Path, str | None]]:
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        txt = path.with_suffix(".txt")
        yield path, txt.read_text(encoding="utf-8") if txt.is_file() else None


def pairs_from_jsonl(path: Path) -> Iterator[tuple[Path, str | None]]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or "image" not in record:
                raise ValueError(f"{path}:{line_no}: expected {{'image': path, 'caption': text}}, got {line.strip()!r}")
            image = Path(record["image"])
            caption = record.get("caption")
            yield (image if image.is_absolute() else path.parent / image), caption if isinstance(caption, str) else None


def load_image(path: Path) -> tuple[bytes, str, Image.Image]:
    """(original bytes, their extension if kept as is else "", the decoded RGB image)."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format
        img.load()
        rgb = img.convert("RGB")
    return data, KEPT_FORMATS.get(fmt or "", ""), rgb


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def usable(pairs: Iterator[tuple[Path, str | None]], skipped: Counter[str]) -> Iterator[tuple[Path, str, tuple]]:
    for path, caption in pairs:
        if caption is None or not caption.strip():
            skipped["no_caption"] += 1
            continue
        try:
            loaded = load_image(path)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            skipped["bad_image"] += 1
            print(f"skipping {path}: {err}", file=sys.stderr)
            continue
        yield path, caption.strip(), loaded


def write_webdataset(pairs: Iterator[tuple[Path, str | None]], out: Path, per_shard: int, skipped: Counter[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    count, tar = 0, None
    try:
        for path, caption, (data, ext, rgb) in usable(pairs, skipped):
            if count % per_shard == 0:
                if tar is not None:
                    tar.close()
                tar = tarfile.open(out / f"{count // per_shard:05d}.tar", "w")
            key = f"{count:09d}"
            add_member(tar, f"{key}.{ext or 'jpg'}", data if ext else jpeg_bytes(rgb))
            add_member(tar, f"{key}.json", json.dumps({"caption": caption, "key": key, "source": str(path)}).encode())
            add_member(tar, f"{key}.txt", caption.encode("utf-8"))
            count += 1
    finally:
        if tar is not None:
            tar.close()
    if count:
        last = (count - 1) // per_shard
        print(f"{count} samples in {last + 1} shards; build_info.storage: {out.resolve()}/{{00000..{last:05d}}}.tar")
    return count


def write_align(pairs: Iterator[tuple[Path, str | None]], out: Path, skipped: Counter[str]) -> int:
    (out / "image").mkdir(parents=True, exist_ok=True)
    annotations = []
    for _path, caption, (data, ext, rgb) in usable(pairs, skipped):
        image_id = str(len(annotations))
        (out / "image" / f"{image_id}.jpg").write_bytes(data if ext == "jpg" else jpeg_bytes(rgb))
        annotations.append({"image_id": image_id, "caption": caption})
    (out / "filter_cap.json").write_text(json.dumps({"annotations": annotations}, ensure_ascii=False, indent=1))
    print(f"{len(annotations)} samples; build_info.storage: {out.resolve()}")
    return len(annotations)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Make webdataset shards or a cc_sbu_align folder from image-caption pairs."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", type=Path, help="images with same-name .txt captions")
    source.add_argument("--jsonl", type=Path, help='lines of {"image": path, "caption": text}')
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--format", choices=("webdataset", "align"), default="webdataset")
    parser.add_argument("--samples-per-shard", type=int, default=10000)
    args = parser.parse_args(argv)
    if args.samples_per_shard < 1:
        parser.error("--samples-per-shard must be >= 1")
    pairs = pairs_from_folder(args.folder) if args.folder else pairs_from_jsonl(args.jsonl)
    skipped: Counter[str] = Counter()
    if args.format == "webdataset":
        count = write_webdataset(pairs, args.out, args.samples_per_shard, skipped)
    else:
        count = write_align(pairs, args.out, skipped)
    if skipped:
        print(f"skipped: {dict(skipped)}", file=sys.stderr)
    if count == 0:
        print("no usable image-caption pair found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
