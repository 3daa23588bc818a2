"""Small shared helpers."""

import os
import re

import minigpt4
from minigpt4.common.utils import get_abs_path, get_repo_root, is_url, now


def test_now_is_a_sortable_timestamp():
    assert re.fullmatch(r"\d{14}", now())


def test_is_url():
    assert is_url("https://huggingface.co/Vision-CAIR/vicuna")
    assert is_url("s3://bucket/key.pth")
    assert not is_url("/data/eva_vit_g.pth")
    assert not is_url("relative/path.pth")
    assert not is_url("C:/weights/x.pth")
    assert not is_url(None)


def test_paths_relative_to_the_package():
    package = os.path.dirname(minigpt4.__file__)
    assert os.path.samefile(get_abs_path("common"), os.path.join(package, "common"))
    assert os.path.samefile(get_repo_root(), os.path.dirname(package))
