"""Upload checks of the demo (the browser test drives the whole app)."""

from __future__ import annotations

import pytest
from PIL import Image

from minigpt4.cli.web import ImageRejected, open_upload

MB = 2**20


def test_open_upload_accepts_any_image_mode(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (10, 8), (1, 2, 3, 4)).save(path)
    image = open_upload(str(path), MB, 10_000)
    assert image.mode == "RGB" and image.size == (10, 8)


@pytest.mark.parametrize(
    "content, max_bytes, max_pixels, reason",
    [
        (None, MB, 10_000, "choose an image"),
        (b"\x89PNG\r\n\x1a\n garbage", MB, 10_000, r"This file is not an image we can read: upload\.png \("),
        ("big-file", 10, 10_000, "too large"),
        ("big-image", MB, 50, "too large"),
    ],
)
def test_open_upload_refuses(tmp_path, content, max_bytes, max_pixels, reason):
    path = tmp_path / "upload.png"
    if content in ("big-file", "big-image"):
        Image.new("RGB", (20, 20), (200, 0, 0)).save(path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageRejected, match=reason):
        open_upload(str(path) if content is not None else None, max_bytes, max_pixels)
