"""``export``: the accepted records as a ``cc_sbu_align`` folder (``filter_cap.json`` + ``image/<id>.jpg``).

The folder is written next to its destination and renamed into place, so a stopped export leaves no half
folder. An existing folder is kept unless ``overwrite`` is set.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from minigpt4.common.config import ConfigError
from minigpt4.curation.images import ref_from_json
from minigpt4.curation.review import current_review
from minigpt4.curation.store import Store

logger = logging.getLogger(__name__)

ANNOTATION_FILE = "filter_cap.json"
IMAGE_FOLDER = "image"


class ExportExists(ConfigError):
    """The export folder exists and overwriting was not asked for."""


@dataclass
class ExportReport:
    folder: str
    exported: int = 0
    stale_reviews: int = 0


def natural_key(record_id: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", record_id)]


def run_export(store: Store, folder: str | os.PathLike[str], overwrite: bool = False, jpeg_quality: int = 95):
    """Write the accepted (and edited) records; returns an :class:`ExportReport`."""
    out = Path(folder)
    if out.exists() and not overwrite:
        raise ExportExists(f"export.folder: {out} already exists; give --overwrite (or export.overwrite: true)")
    report = ExportReport(str(out))
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / IMAGE_FOLDER).mkdir(parents=True)
    annotations = []
    for record in sorted(store, key=lambda r: natural_key(r["id"])):
        review = current_review(record)
        if review is None:
            report.stale_reviews += bool(record.get("review"))
            continue
        if review["decision"] not in ("accept", "edit"):
            continue
        image = ref_from_json(record["id"], record["image"]).open()
        image.save(tmp / IMAGE_FOLDER / f"{record['id']}.jpg", quality=jpeg_quality)
        annotations.append({"image_id": record["id"], "caption": review["text"]})
    with open(tmp / ANNOTATION_FILE, "w", encoding="utf-8") as f:
        json.dump({"annotations": annotations}, f, ensure_ascii=False, indent=1)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    report.exported = len(annotations)
    if report.stale_reviews:
        logger.warning("%d reviews were made on an earlier text and are not exported", report.stale_reviews)
    logger.info("exported %d records to %s", report.exported, out)
    return report
