"""The review page (``python -m minigpt4.cli.curate review``) in a real browser: chromium (Debian's, driven by
Playwright) accepts a record with the keyboard, edits one, rejects one, reloads the page and finds every decision
kept, in the page and in the store on disk; the page requests nothing off the machine."""

from __future__ import annotations

import sys
from urllib.parse import urlparse

import pytest
import yaml

from minigpt4.cli import curate
from minigpt4.curation.store import Store
from tests.cli.demo_process import clean_env, running_demo
from tests.cli.tiny_chat import write_images

TIMEOUT_MS = 60_000

GENERATED = {
    "1": "A red shape is on the left of the picture. It is large.",
    "2": "A blue shape is in the center. It is small and alone.",
    "3": "A green shape is at the top. It is the only object there.",
    "4": "I'm sorry, I apologize for the mistake.",  # the failure filter rejects it: not shown as pending
}


@pytest.fixture(scope="module")
def review_setup(tmp_path_factory):
    """A store of four generated descriptions, refined by the rule cleaner and filtered by the real steps."""
    root = tmp_path_factory.mktemp("review")
    colours = {"1": "red", "2": "blue", "3": "green", "4": "red"}
    paths = write_images(root / "images", {f"{i}.png": c for i, c in colours.items()})
    store_path = root / "store.jsonl"
    store = Store(store_path)
    store.append(
        [
            {
                "id": i,
                "image": {"path": str(path)},
                "texts": {"generate:t": {"step": "generate", "text": GENERATED[i]}},
                "latest": {"generate": "generate:t"},
            }
            for i, path in zip(colours, paths)
        ]
    )
    store.close()
    cfg = root / "curate.yaml"
    cfg.write_text(
        yaml.safe_dump({"store": str(store_path), "refine": {"backend": "rule"}, "filter": {"min_words": 3}})
    )
    for step in ("refine", "filter"):
        assert curate.main([step, "--cfg-path", str(cfg)]) == 0
    return cfg, store_path


@pytest.fixture(scope="module")
def page_url(review_setup, tmp_path_factory):
    cfg, _ = review_setup
    log = tmp_path_factory.getbasetemp() / "review.log"
    command = [sys.executable, "-m", "minigpt4.cli.curate", "review", "--cfg-path", str(cfg)]
    with running_demo(command, clean_env(), log) as url:
        yield url


def shows(page, selector: str, text: str) -> None:
    page.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text])


def text_box(page):
    return page.locator("#review-text textarea")


def test_accept_edit_reject_then_reload_keeps_every_decision(page_url, browser, review_setup):
    _, store_path = review_setup
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    off_machine: list[str] = []

    def record(request) -> None:
        if urlparse(request.url).hostname not in ("127.0.0.1", "localhost"):
            off_machine.append(request.url)

    page.on("request", record)
    page.goto(page_url)

    shows(page, "#review-position", "1 / 4")
    shows(page, "#review-counts", "3 to review")
    shows(page, "#review-verdict", "passed")
    assert "red shape" in page.locator("#review-generated textarea").input_value()
    page.wait_for_selector("#review-image img")

    page.locator("body").click(position={"x": 5, "y": 5})  # focus outside the text boxes
    page.keyboard.press("a")  # accept record 1 from the keyboard
    shows(page, "#review-position", "2 / 4")
    shows(page, "#review-counts", "1 accepted")

    edited = "A small blue square is in the center of the picture."
    text_box(page).fill(edited)
    text_box(page).press("Control+Enter")  # save the edit of record 2
    shows(page, "#review-position", "3 / 4")
    shows(page, "#review-counts", "1 edited")

    page.click("#reject-button")  # reject record 3; record 4 was filtered out: nothing left to review
    shows(page, "#review-counts", "1 rejected, 0 to review")

    page.reload()  # every decision is in the store; nothing is left to review, so the page opens on record 1
    shows(page, "#review-counts", "1 accepted, 1 edited, 1 rejected")
    shows(page, "#review-position", "1 / 4")
    shows(page, "#review-decision", "accept")
    page.keyboard.press("n")
    shows(page, "#review-position", "2 / 4")
    shows(page, "#review-decision", "edit")
    assert text_box(page).input_value() == edited
    page.click("#next-button")
    shows(page, "#review-position", "3 / 4")
    shows(page, "#review-decision", "reject")
    page.click("#next-button")
    shows(page, "#review-position", "4 / 4")
    shows(page, "#review-verdict", "rejected (failure_phrase")
    context.close()

    decisions = {r["id"]: (r.get("review") or {}).get("decision") for r in Store(store_path)}
    assert decisions == {"1": "accept", "2": "edit", "3": "reject", "4": None}
    assert Store(store_path).get("2")["review"]["text"] == edited
    assert off_machine == []
