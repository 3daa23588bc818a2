import numpy as np
import pytest
import torch
from omegaconf.errors import ConfigKeyError
from PIL import Image

from minigpt4.common.constants import CLIP_MEAN, CLIP_STD
from minigpt4.common.registry import registry
from minigpt4.processors.blip_processors import (
    Blip2ImageEvalProcessor,
    Blip2ImageTrainProcessor,
    BlipCaptionProcessor,
    to_rgb,
)


def test_registered_names():
    assert registry.get_processor_class("blip2_image_train") is Blip2ImageTrainProcessor
    assert registry.get_processor_class("blip2_image_eval") is Blip2ImageEvalProcessor
    assert registry.get_processor_class("blip_caption") is BlipCaptionProcessor


@pytest.mark.parametrize("cls", [Blip2ImageTrainProcessor, Blip2ImageEvalProcessor])
def test_image_shapes_and_range(cls):
    proc = cls.from_config({"name": "ignored", "image_size": 32})
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8))
    out = proc(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    low = (0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    high = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert (out.amin(dim=(1, 2)) >= low - 0.1).all() and (out.amax(dim=(1, 2)) <= high + 0.1).all()


def test_eval_normalises_with_clip_mean_std():
    out = Blip2ImageEvalProcessor(image_size=8)(Image.new("RGB", (20, 10), (255, 0, 128)))
    expected = (torch.tensor([255, 0, 128]) / 255.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(out[:, 4, 4], expected.float(), atol=1e-2, rtol=0)


def test_train_crop_is_random_and_seedable():
    proc = Blip2ImageTrainProcessor(image_size=16)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    torch.manual_seed(0)
    a = proc(img)
    torch.manual_seed(0)
    b = proc(img)
    c = proc(img)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_schema_defaults_and_unknown_key():
    proc = Blip2ImageTrainProcessor.from_config(None)
    assert proc.image_size == 224
    assert proc.mean == tuple(CLIP_MEAN) and proc.std == tuple(CLIP_STD)
    with pytest.raises(ConfigKeyError):
        Blip2ImageEvalProcessor.from_config({"name": "blip2_image_eval", "min_scale": 0.3})


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("A Dog (running) on the beach!", "a dog running on the beach"),
        ("  Hello...   World;  ", "hello world"),
        ('He said: "hi" #tag ~ok*', "he said hi tag ok"),
        ("line one\nline two\n", "line one\nline two"),  # a single newline stays, as published
        ("a\n\nb\t\tc", "a b c"),
        ("Keep, commas? and-dashes 'quotes'", "keep, commas? and-dashes 'quotes'"),
    ],
)
def test_caption_cleanup(caption, expected):
    assert BlipCaptionProcessor()(caption) == expected


def test_caption_prompt_and_max_words():
    proc = BlipCaptionProcessor.from_config({"name": "blip_caption", "prompt": "a picture of ", "max_words": 3})
    assert proc("One two three four five.") == "a picture of one two three"


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "I;16", "I", "F"])
def test_any_mode_becomes_rgb(mode):
    img = Image.new("RGB", (6, 5), (100, 150, 200)).convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        img = Image.fromarray(np.full((5, 6), 257 * 100, dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(np.full((5, 6), 65535, dtype=np.int32))
    elif mode == "F":
        img = Image.fromarray(np.full((5, 6), 0.5, dtype=np.float32))
    rgb = to_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == (6, 5)
    value = rgb.getpixel((2, 2))
    if mode == "I;16":
        assert value == (100, 100, 100)
    elif mode == "I":
        assert value == (255, 255, 255)
    elif mode == "F":
        assert value == (128, 128, 128)
    assert Blip2ImageEvalProcessor(image_size=4)(img).shape == (3, 4, 4)


def test_rgba_drops_alpha_like_convert():
    img = Image.new("RGBA", (3, 3), (10, 20, 30, 0))
    assert to_rgb(img).getpixel((0, 0)) == (10, 20, 30)
