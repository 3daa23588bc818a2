"""The tiny world's visual vocabulary, its images and the language that describes them.

A scene is a block of identical small shapes (one per cell of an 8 x 8 board) on a plain background. Four
attributes, each with a small set of values, make the vocabulary the tiny model has to learn to *see* and to *name*:

======== =================================================
shape    circle, square, triangle, star
colour   red, green, blue, yellow, purple
position left, right, top, bottom, center
size     small, large
======== =================================================

The background (white, black, gray) varies too but is never named.
Each value is named by exactly one word in every text the world writes, so an evaluation can read the attribute
values back out of a generated description (:func:`mentioned_values`).

Two caption styles exist, as in MiniGPT-4: terse stage-1 captions (two sources with slightly different habits,
like LAION and CC/SBU) and detailed, multi-sentence stage-2 descriptions (like ``cc_sbu_align``).
"""

from __future__ import annotations

import io
import math
import random
import re
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "green", "blue", "yellow", "purple")
POSITIONS = ("left", "right", "top", "bottom", "center")
SIZES = ("small", "large")
BACKGROUNDS = ("white", "black", "gray")

#: attribute name -> its values (each value is one word in every text of the world); the background varies too
#: but is never named: with two colour words per text the tiny LLM confuses the object's colour with the
#: background's
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": COLOURS,
    "position": POSITIONS,
    "size": SIZES,
}

RGB = {
    "red": (215, 35, 35),
    "green": (35, 165, 50),
    "blue": (35, 70, 220),
    "yellow": (235, 205, 30),
    "purple": (140, 45, 180),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
}

#: the image is a GRID x GRID board of cells (8 x 8 px at 64 px, the tiny ViT's patches); a scene's object is a
#: square block of small shapes, one per cell: 2 x 2 cells ("small") or 3 x 3 cells ("large")
GRID = 8
BLOCK = {"small": 2, "large": 3}
SHAPE_RADIUS = 0.40  # of a cell
SUPERSAMPLE = 4
COLOUR_JITTER = 18
RADIUS_JITTER = 0.06
OFFSET_JITTER = 0.05  # of a cell

# the terse phrasing of a position ("a red circle on the left")
POSITION_PHRASE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
# the detailed phrasing ("The circle is placed on the left side of the image.")
POSITION_DETAIL = {
    "left": "on the left side",
    "right": "on the right side",
    "top": "near the top",
    "bottom": "near the bottom",
    "center": "in the center",
}


@dataclass(frozen=True)
class Scene:
    """One image's ground truth: a value for every attribute of :data:`ATTRIBUTES`."""

    shape: str
    colour: str
    position: str
    size: str
    background: str

    def labels(self) -> dict[str, str]:
        return asdict(self)


def sample_scene(rng: random.Random) -> Scene:
    """A scene with every attribute drawn uniformly (so chance level is 1 / number of values)."""
    values = {name: rng.choice(values) for name, values in ATTRIBUTES.items()}
    return Scene(**values, background=rng.choice(BACKGROUNDS))


# ----------------------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------------------


def _jitter(rgb: tuple[int, int, int], rng: random.Random) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-COLOUR_JITTER, COLOUR_JITTER))) for c in rgb)  # type: ignore[return-value]


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(f"not a polygon shape: {shape}")


def block_origin(scene: Scene, rng: random.Random) -> tuple[int, int]:
    """Top-left cell ``(row, col)`` of the scene's block: at its position's edge (or centre), centred along it."""
    k = BLOCK[scene.size]
    low, high, mid = 0, GRID - k, (GRID - k) // 2
    along = rng.randint(mid, mid + (GRID - k) % 2)
    if scene.position == "left":
        return along, low
    if scene.position == "right":
        return along, high
    if scene.position == "top":
        return low, along
    if scene.position == "bottom":
        return high, along
    return along, rng.randint(mid, mid + (GRID - k) % 2)


def layout(scene: Scene, rng: random.Random) -> list[tuple[int, int]]:
    """The cells ``(row, col)`` the scene's shapes occupy."""
    k = BLOCK[scene.size]
    row, col = block_origin(scene, rng)
    return [(row + i, col + j) for i in range(k) for j in range(k)]


def render(scene: Scene, size: int, rng: random.Random, with_cells: bool = False) -> Any:
    """Draw ``scene`` as a ``size`` x ``size`` RGB image (anti-aliased by supersampling).

    With ``with_cells``, return ``(image, cells)``, the occupied cells of :func:`layout`.
    """
    big = size * SUPERSAMPLE
    cell = big / GRID
    image = Image.new("RGB", (big, big), _jitter(RGB[scene.background], rng))
    draw = ImageDraw.Draw(image)
    cells = layout(scene, rng)
    for row, col in cells:
        cx = (col + 0.5 + rng.uniform(-OFFSET_JITTER, OFFSET_JITTER)) * cell
        cy = (row + 0.5 + rng.uniform(-OFFSET_JITTER, OFFSET_JITTER)) * cell
        r = SHAPE_RADIUS * cell * (1 + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER))
        fill = _jitter(RGB[scene.colour], rng)
        if scene.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif scene.shape == "square":
            s = r * 0.85
            draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
        else:
            draw.polygon(_shape_polygon(scene.shape, cx, cy, r), fill=fill)
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    return (image, cells) if with_cells else image


def jpeg_bytes(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------
# language
# ----------------------------------------------------------------------------------------------------------

# stage 1, source "laion": terse, sometimes keyword-like
LAION_TEMPLATES = (
    "{colour} {shape}s {where}",
    "a {size} group of {colour} {shape}s {where}",
    "{colour} {shape}s {where}, {size} group",
    "{size} group of {colour} {shape}s {where}",
)
# stage 1, source "cc_sbu": short sentences
CC_SBU_TEMPLATES = (
    "a group of {colour} {shape}s {where} of the picture",
    "a {size} group of {colour} {shape}s {where} of the picture",
    "there are {colour} {shape}s {where}",
    "a picture of a {size} group of {colour} {shape}s {where}",
)
# stage 2: detailed, multi-sentence descriptions in one distinct style (one opening, so that the style is decided
# by a single first token)
DETAILED_TEMPLATES = (
    "The image shows a {size} group of {colour} {shape}s on a plain background. The {shape}s are placed "
    "{detail} of the image. They are the only objects in the picture.",
    "The image shows a {size} group of {colour} {shape}s. It is located {detail} of the frame, on a plain "
    "background. Nothing else can be seen.",
    "The image shows several {colour} {shape}s arranged in a {size} tight block. The block sits {detail} of "
    "the image. The scene is simple and clean.",
)

CAPTION_TEMPLATES = {"laion": LAION_TEMPLATES, "cc_sbu": CC_SBU_TEMPLATES, "detailed": DETAILED_TEMPLATES}


def describe(scene: Scene, style: str, rng: random.Random) -> str:
    """One text about ``scene`` in ``style`` (``laion``, ``cc_sbu`` or ``detailed``)."""
    template = rng.choice(CAPTION_TEMPLATES[style])
    return template.format(
        **scene.labels(), where=POSITION_PHRASE[scene.position], detail=POSITION_DETAIL[scene.position]
    )


_WORD = re.compile(r"[a-z]+")


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and word[:-1] in SHAPES else word


def mentioned_values(text: str) -> dict[str, list[str]]:
    """Attribute name -> the values of that attribute named in ``text`` (in order of first mention)."""
    words = [_singular(w) for w in _WORD.findall(text.lower())]
    found: dict[str, list[str]] = {}
    for name, values in ATTRIBUTES.items():
        found[name] = list(dict.fromkeys(w for w in words if w in values))
    return found


def judge(text: str, scene_labels: dict[str, str]) -> dict[str, bool]:
    """Attribute name -> whether ``text`` names the right value and no other value of that attribute."""
    found = mentioned_values(text)
    return {name: found[name] == [scene_labels[name]] for name in ATTRIBUTES}


def chance_levels() -> dict[str, float]:
    """The accuracy of naming a uniformly random value, per attribute."""
    return {name: 1.0 / len(values) for name, values in ATTRIBUTES.items()}
