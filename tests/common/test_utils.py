"""Small shared helpers."""

import os
import re

import pytest

import minigpt4
from minigpt4.common.checkpoints import find_known_checkpoint
from minigpt4.common.utils import get_repo_root, is_url, now, resolve_local_file


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
    assert os.path.samefile(get_repo_root(), os.path.dirname(package))


def test_resolve_existing_file_and_folder(tmp_path, monkeypatch):
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert resolve_local_file(str(f), "model.ckpt") == str(f)
    assert resolve_local_file(str(tmp_path), "model.llama_model") == str(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert resolve_local_file("w.pth", "model.ckpt") == "w.pth"


def test_resolve_relative_against_search_dirs(tmp_path, monkeypatch):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "alignment.txt").write_text("hi")
    monkeypatch.chdir(tmp_path / "prompts")  # not found relative to the current directory
    found = resolve_local_file("prompts/alignment.txt", "model.prompt_path", search_dirs=[str(tmp_path)])
    assert found == os.path.join(str(tmp_path), "prompts/alignment.txt")


def test_resolve_url_names_key_and_source():
    entry = find_known_checkpoint("eva_vit_g.pth")
    with pytest.raises(FileNotFoundError) as err:
        resolve_local_file(entry.source, "model.vit_path")
    msg = str(err.value)
    assert "model.vit_path" in msg and "never downloads" in msg and entry.source in msg


def test_resolve_missing_known_file_says_where_to_get_it(tmp_path):
    missing = tmp_path / "blip2_pretrained_flant5xxl.pth"
    with pytest.raises(FileNotFoundError) as err:
        resolve_local_file(str(missing), "model.q_former_model")
    msg = str(err.value)
    assert "model.q_former_model" in msg and str(missing) in msg
    assert "blip2_pretrained_flant5xxl.pth" in msg and "storage.googleapis.com" in msg


def test_resolve_missing_file_of_ones_own_gets_no_download_advice(tmp_path):
    # a stage-1 output or a folder of one's own is not a published file: no links to published checkpoints
    for value, key in ((tmp_path / "my_llm", "model.llama_model"), (tmp_path / "checkpoint_3.pth", "model.ckpt")):
        with pytest.raises(FileNotFoundError) as err:
            resolve_local_file(str(value), key)
        msg = str(err.value)
        assert msg.startswith(f"{key}: file not found") and msg.count(str(value)) == 2
        assert "http" not in msg and "download" not in msg


def test_resolve_unset_lists_the_published_files_for_the_key():
    with pytest.raises(FileNotFoundError) as err:
        resolve_local_file("", "model.llama_model")
    msg = str(err.value)
    assert "huggingface.co/Vision-CAIR/vicuna" in msg and "Llama-2-7b-chat-hf" in msg


def test_resolve_lists_each_place_looked_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        resolve_local_file("missing.pth", "model.ckpt", search_dirs=[str(tmp_path), str(tmp_path / "other")])
    msg = str(err.value)
    assert msg.count(str(tmp_path / "missing.pth")) == 1 and str(tmp_path / "other" / "missing.pth") in msg


@pytest.mark.parametrize("value", [None, ""])
def test_resolve_unset(value):
    with pytest.raises(FileNotFoundError, match="model.ckpt: no path set"):
        resolve_local_file(value, "model.ckpt")
