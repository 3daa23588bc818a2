"""The Gradio demo in a real browser: ``demo.py`` runs as a subprocess on a tiny eval config, chromium (Debian's,
driven by Playwright) uploads images, chats, uploads a new image mid-conversation, restarts, opens a second
session and uploads a corrupt file; no page requests anything off the machine.

Needs the ``chromium`` executable (``apt-get install chromium``, as ``.ci/run`` does) and the ``playwright`` package
(the ``dev`` extra); fails without them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from minigpt4.cli import web
from tests.cli.demo_process import clean_env, demo_command, running_demo
from tests.cli.tiny_chat import write_images, write_tiny_eval_config

ANSWER_TIMEOUT_MS = 120_000
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory):
    """``demo.py`` as a user starts it (no Gradio or Hub variables set) on a tiny eval config."""
    root = tmp_path_factory.mktemp("demo")
    cfg = write_tiny_eval_config(root)
    log = root / "demo.log"
    try:
        with running_demo(demo_command(cfg, "--max-image-mb", "1", "--seed", "0"), clean_env(), log) as url:
            yield url
    finally:
        shutil.copy(log, tmp_path_factory.getbasetemp() / "demo.log")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("demo_images")
    red, blue = write_images(folder, {"red.png": "red", "blue.png": "blue"})
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really an image")
    return {"red": red, "blue": blue, "corrupt": corrupt}


class DemoPage:
    """One browser session of the demo."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.page.set_default_timeout(ANSWER_TIMEOUT_MS)
        self.off_machine: list[str] = []  # every request of the page to another host (fonts, analytics...)
        self.page.on("request", self._record)
        self.page.goto(url)
        self.page.wait_for_selector("#upload-button")

    def upload(self, path: Path) -> None:
        """Choose the file once the upload box is empty (a reset or a refusal clears it), then start."""
        self.page.wait_for_function("() => !document.querySelector('#image-upload').innerText.includes('.png')")
        self.page.set_input_files("#image-upload input[type=file]", str(path))
        self.page.wait_for_selector(f"#image-upload [aria-label='{path.name}']")
        self.page.click("#upload-button")

    def _record(self, request) -> None:
        url = urlparse(request.url)
        if url.scheme not in ("data", "blob") and url.hostname not in LOCAL_HOSTS:
            self.off_machine.append(request.url)

    def wait_status(self, text: str) -> None:
        self.page.wait_for_function("text => document.querySelector('#status textarea').value.includes(text)", arg=text)

    def toast_closes_by_itself(self) -> None:
        """A toast is shown with a timer of ``TOAST_SECONDS`` and then closes without being touched."""
        toast = self.page.locator("[data-testid=toast-body]")
        toast.wait_for()
        style = toast.locator(".timer").get_attribute("style") or ""
        assert f"animation-duration: {web.TOAST_SECONDS}s" in style, style
        toast.wait_for(state="detached")

    def wait_chat_ready(self) -> None:
        self.page.wait_for_function("() => !document.querySelector('#question textarea').disabled")

    def status(self) -> str:
        return self.page.input_value("#status textarea")

    def bot_messages(self) -> list[str]:
        return self.page.locator("#chatbot [data-testid=bot]").all_inner_texts()

    def user_messages(self) -> list[str]:
        return self.page.locator("#chatbot [data-testid=user]").all_inner_texts()

    def ask(self, question: str) -> str:
        """Ask and wait for the whole streamed answer; returns it."""
        turn = len(self.user_messages()) + 1
        self.page.fill("#question textarea", question)
        self.page.press("#question textarea", "Enter")
        self.page.wait_for_function(
            "turn => document.querySelector('#status textarea').value.startsWith(`Ready. (${turn} answer`)", arg=turn
        )
        bot = self.bot_messages()
        return bot[-1] if len(bot) == turn else ""

    def close(self) -> None:
        self.context.close()


def test_upload_ask_restart_sessions_and_corrupt_upload(demo_url, browser, images):
    first = DemoPage(browser, demo_url)
    try:
        assert first.page.locator("#question textarea").is_disabled()  # nothing to ask before an image
        first.upload(images["red"])
        first.wait_chat_ready()
        assert "received" in first.status().lower()
        answer = first.ask("Describe this image in detail.")
        assert answer.strip() and "empty answer" not in answer, "the streamed answer is empty"
        assert first.user_messages() == ["Describe this image in detail."]

        # Restart clears the conversation and locks the question box until the next upload
        first.page.click("#restart-button")
        first.page.wait_for_function("() => document.querySelector('#question textarea').disabled")
        assert first.bot_messages() == [] and first.user_messages() == []

        first.upload(images["red"])
        first.wait_chat_ready()
        first.ask("Where is it?")

        # another image mid-conversation starts a new conversation about it, and says so
        first.upload(images["blue"])
        first.wait_status(web.NEW_IMAGE_NOTE)
        assert first.bot_messages() == [] and first.user_messages() == []
        first.toast_closes_by_itself()
        first.ask("What colour is the square?")

        # a second session has its own conversation
        second = DemoPage(browser, demo_url)
        try:
            second.upload(images["blue"])
            second.wait_chat_ready()
            second.ask("Where is the blue area?")
            second.ask("Anything else?")
            assert first.user_messages() == ["What colour is the square?"]
            assert len(first.bot_messages()) == 1
            first.ask("Is it large?")
            assert first.user_messages() == ["What colour is the square?", "Is it large?"]
            assert second.user_messages() == ["Where is the blue area?", "Anything else?"]

            # a corrupt upload is refused with a message; both sessions keep working
            second.page.click("#restart-button")
            second.page.wait_for_function("() => document.querySelector('#question textarea').disabled")
            second.upload(images["corrupt"])
            second.wait_status("This file is not an image we can read: corrupt.png")
            assert second.page.locator("#question textarea").is_disabled()
            second.toast_closes_by_itself()
            first.ask("And now?")
            assert len(first.user_messages()) == 3
            second.upload(images["red"])
            second.wait_chat_ready()
            second.ask("Better?")
            assert second.user_messages() == ["Better?"]
            assert second.off_machine == []
        finally:
            second.close()
        assert first.off_machine == []
    finally:
        first.close()


def test_restart_before_upload_and_empty_question(demo_url, browser):
    page = DemoPage(browser, demo_url)
    try:
        page.page.click("#restart-button")
        page.page.click("#upload-button")  # no file chosen: a message, no crash
        page.wait_status("choose an image")
        assert page.page.locator("#question textarea").is_disabled()
        page.toast_closes_by_itself()
        assert page.off_machine == []
    finally:
        page.close()
