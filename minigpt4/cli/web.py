"""The Gradio chat demo: upload an image, then talk about it (``python demo.py --cfg-path ...``).

Every browser session has its own conversation and images (``gr.State``); a queue runs one generation at a
time (``--concurrency``). An unreadable or oversized image is refused with a message and the app keeps serving.
Uploading another image during a conversation starts a new conversation about it (with a note saying so).
Gradio's usage analytics are off and nothing is sent off the machine unless ``--share`` asks for a public link
(see :mod:`minigpt4.cli.local_gradio`).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from minigpt4.cli import local_gradio
from minigpt4.cli.common import (
    add_generation_args,
    add_model_args,
    check_generation_args,
    generation_options,
    load_chat,
)
from minigpt4.conversation.conversation import Chat, Conversation
from minigpt4.conversation.generation import GenerationConfig
from minigpt4.datasets.datasets.common import image_error_reason

logger = logging.getLogger(__name__)

TITLE = "MiniGPT-4"
DESCRIPTION = (
    "Upload an image, press **Upload & Start Chat**, then ask about it. "
    "Another image, uploaded the same way, starts a new conversation about it. "
    "**Restart** clears the conversation and the image."
)
ASK_PLACEHOLDER = "Type a question and press Enter"
UPLOAD_FIRST = "Please upload your image first"
UPLOAD_LABEL = "Upload & Start Chat"
NEW_IMAGE_LABEL = "Upload & Restart Chat"
IMAGE_RECEIVED = "Image received. Ask a question."
NEW_IMAGE_NOTE = "New image received: the conversation started again. Ask a question."
NEW_IMAGE_HINT = f"Press **{NEW_IMAGE_LABEL}** to talk about this image (the conversation starts again)."
TOAST_SECONDS = 5  # warnings and notes close by themselves (Gradio's default keeps them 10 s)
GENERATING = "Generating..."
READY = "Ready."
EMPTY_ANSWER = "*(empty answer: the model stopped at once)*"
TRUNCATED_NOTICE = "The conversation is long: its oldest part was dropped."


class ImageRejected(ValueError):
    """An upload that is not a readable image of acceptable size; the message is shown to the user."""


def open_upload(path: str | None, max_bytes: int, max_pixels: int) -> Image.Image:
    """The uploaded file as an RGB PIL image, or :class:`ImageRejected` saying why not."""
    if not path:
        raise ImageRejected("Please choose an image first.")
    name = os.path.basename(path)  # Gradio keeps the uploaded file's own name
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ImageRejected(f"The image is too large ({size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB).")
    try:
        with Image.open(path) as raw:
            if raw.width * raw.height > max_pixels:
                raise ImageRejected(f"The image is too large ({raw.width}x{raw.height} pixels).")
            return raw.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageRejected):
            raise
        raise ImageRejected(f"This file is not an image we can read: {name} ({image_error_reason(err)}).") from err


class DemoHandlers:
    """The event handlers of the demo, bound to one :class:`Chat` (shared) and one template.

    Per-session values travel through ``gr.State``: the conversation and the list of image embeddings. Answers
    follow ``generation``, with the beams, temperature and length chosen on the page.
    """

    def __init__(
        self,
        chat: Chat,
        template: Conversation,
        max_image_bytes: int,
        max_image_pixels: int,
        generation: GenerationConfig,
    ) -> None:
        self.chat = chat
        self.generation = generation
        self.template = template
        self.max_image_bytes = max_image_bytes
        self.max_image_pixels = max_image_pixels

    def upload(self, path: str | None, conv: Conversation | None, img_list: list | None):
        import gradio as gr

        try:
            image = open_upload(path, self.max_image_bytes, self.max_image_pixels)
        except ImageRejected as err:  # the conversation in progress, if any, goes on
            gr.Warning(str(err), duration=TOAST_SECONDS)
            keep = gr.update()
            return (gr.update(value=None), keep, keep, keep, keep, conv, img_list, str(err))
        restarted = conv is not None
        conv, img_list = self.template.copy(), []
        self.chat.upload_img(image, conv, img_list)
        if restarted:
            gr.Info(NEW_IMAGE_NOTE, duration=TOAST_SECONDS)
        return (
            gr.update(value=None),  # the upload box takes the next image; the preview shows the image in use
            gr.update(value=image, visible=True),
            gr.update(interactive=True, placeholder=ASK_PLACEHOLDER),
            gr.update(value=NEW_IMAGE_LABEL, interactive=True),
            [],
            conv,
            img_list,
            NEW_IMAGE_NOTE if restarted else IMAGE_RECEIVED,
        )

    def ask(self, text: str, chatbot: list[dict[str, Any]], conv: Conversation | None):
        import gradio as gr

        if conv is None:
            gr.Warning(UPLOAD_FIRST, duration=TOAST_SECONDS)
            return gr.update(), chatbot, conv
        if not text.strip():
            gr.Warning("Please type a question.", duration=TOAST_SECONDS)
            return gr.update(), chatbot, conv
        self.chat.ask(text, conv)
        return "", [*chatbot, {"role": "user", "content": text}], conv

    def answer(
        self,
        chatbot: list[dict[str, Any]],
        conv: Conversation | None,
        img_list: list | None,
        num_beams: int,
        temperature: float,
        max_new_tokens: int,
    ) -> Iterator[tuple[list[dict[str, Any]], Conversation | None, str]]:
        import gradio as gr

        if conv is None or not conv.messages or conv.messages[-1][0] != conv.roles[0]:
            return  # nothing asked (no image yet, or an empty question)
        chatbot = [*chatbot, {"role": "assistant", "content": ""}]
        try:
            stream = self.chat.answer(
                conv,
                img_list or [],
                stream=True,
                config=self.generation,
                num_beams=int(num_beams),
                temperature=float(temperature),
                max_new_tokens=int(max_new_tokens),
            )
            notice = f" {TRUNCATED_NOTICE}" if stream.truncated else ""
            if stream.truncated:
                gr.Info(TRUNCATED_NOTICE, duration=TOAST_SECONDS)
            yield chatbot, conv, GENERATING + notice
            for piece in stream:
                chatbot[-1] = {"role": "assistant", "content": chatbot[-1]["content"] + piece}
                yield chatbot, conv, GENERATING + notice
            chatbot[-1] = {"role": "assistant", "content": stream.text or EMPTY_ANSWER}
            answers = sum(1 for role, _ in conv.messages if role == conv.roles[1])
            yield chatbot, conv, f"{READY} ({answers} {'answer' if answers == 1 else 'answers'}){notice}"
        except Exception as err:  # the app keeps serving other sessions
            logger.exception("generation failed")
            if conv.messages and conv.messages[-1][1] is None:
                conv.messages.pop()  # drop the unanswered assistant turn
            gr.Warning(f"Generation failed: {type(err).__name__}", duration=TOAST_SECONDS)
            yield chatbot[:-1], conv, f"Generation failed: {err}"

    def reset(self, conv: Conversation | None, img_list: list | None):
        import gradio as gr

        return (
            [],
            gr.update(value=None),
            gr.update(value=None, visible=False),
            gr.update(value="", interactive=False, placeholder=UPLOAD_FIRST),
            gr.update(value=UPLOAD_LABEL, interactive=True),
            None,
            None,
            "",
        )


def build_demo(
    chat: Chat,
    template: Conversation,
    max_image_mb: float = 20.0,
    max_image_pixels: int = 64_000_000,
    generation: GenerationConfig | None = None,
    session_ttl: float | None = 3600,
):
    """The Gradio Blocks of the demo (not launched).

    Args:
        chat: the shared :class:`Chat`.
        template: the chat template every new conversation starts from.
        max_image_mb / max_image_pixels: larger uploads are refused with a message.
        generation: how answers are decoded (default: the published demo's :class:`GenerationConfig`); the page's
            sliders start at its beams, temperature and max new tokens. Its ``max_length`` (context + new
            tokens) drops older context, with a notice, beyond it.
        session_ttl: seconds a session's conversation (with its key/value cache) is kept after its last
            answer; None keeps it until the session ends.
    """
    gr = local_gradio.import_gradio()
    generation = generation or GenerationConfig()
    handlers = DemoHandlers(chat, template, int(max_image_mb * 2**20), max_image_pixels, generation)
    with gr.Blocks(title=TITLE, analytics_enabled=local_gradio.analytics_enabled()) as demo:
        gr.Markdown(f"# {TITLE}\n{DESCRIPTION}")
        with gr.Row():
            with gr.Column(scale=1):
                image_file = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="image-upload")
                preview = gr.Image(
                    label="Current image", interactive=False, visible=False, height=240, elem_id="image-preview"
                )
                upload_button = gr.Button(UPLOAD_LABEL, variant="primary", elem_id="upload-button")
                restart_button = gr.Button("Restart", elem_id="restart-button")
                num_beams = gr.Slider(
                    1, 10, value=generation.num_beams, step=1, label="beam search numbers", interactive=True
                )
                temperature = gr.Slider(
                    0.1, 2.0, value=generation.temperature, step=0.1, label="Temperature", interactive=True
                )
                max_new_tokens = gr.Slider(
                    16, 1024, value=generation.max_new_tokens, step=16, label="max new tokens", interactive=True
                )
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
            with gr.Column(scale=2):
                conv_state = gr.State(None, time_to_live=session_ttl)
                img_state = gr.State(None)
                chatbot = gr.Chatbot(label=TITLE, elem_id="chatbot")
                question = gr.Textbox(
                    label="User", placeholder=UPLOAD_FIRST, interactive=False, elem_id="question", submit_btn=True
                )

        answering = question.submit(
            handlers.ask, [question, chatbot, conv_state], [question, chatbot, conv_state]
        ).then(
            handlers.answer,
            [chatbot, conv_state, img_state, num_beams, temperature, max_new_tokens],
            [chatbot, conv_state, status],
        )
        upload_button.click(
            handlers.upload,
            [image_file, conv_state, img_state],
            [image_file, preview, question, upload_button, chatbot, conv_state, img_state, status],
            cancels=[answering],  # a new image ends the answer in progress about the old one
        )
        restart_button.click(
            handlers.reset,
            [conv_state, img_state],
            [chatbot, image_file, preview, question, upload_button, conv_state, img_state, status],
            queue=False,
        )
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MiniGPT-4 chat demo (Gradio)")
    add_model_args(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--concurrency", type=int, default=1, help="generations that may run at the same time")
    parser.add_argument("--max-image-mb", type=float, default=20.0, help="largest accepted upload")
    parser.add_argument("--seed", type=int, default=None, help="seed the sampling (reproducible sessions)")
    parser.add_argument(
        "--session-ttl", type=float, default=3600, help="seconds an idle conversation (and its cache) is kept"
    )
    add_generation_args(parser)
    return check_generation_args(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    from minigpt4.common.logger import setup_logger

    args = parse_args(argv)
    setup_logger()
    if args.seed is not None:
        torch.manual_seed(args.seed)
    loaded = load_chat(args)
    demo = build_demo(
        loaded.chat,
        loaded.template,
        max_image_mb=args.max_image_mb,
        generation=generation_options(args),
        session_ttl=args.session_ttl,
    )
    demo.queue(default_concurrency_limit=args.concurrency)
    local_gradio.launch(
        demo,
        share=args.share,
        server_name=args.host,
        server_port=args.port,
        max_file_size=int(args.max_image_mb * 2**20),
    )


if __name__ == "__main__":
    main()
