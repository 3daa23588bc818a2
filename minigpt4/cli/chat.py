"""Chat about an image in the terminal.

    python -m minigpt4.cli.chat --cfg-path eval_configs/minigpt4_eval.yaml --image photo.jpg
    python -m minigpt4.cli.chat --cfg-path ... --image photo.jpg --question "Describe this image in detail."

Without ``--question``, questions are read from standard input, one per line; each answer is written to
standard output followed by an empty line (streamed as it is generated with ``--stream``). Lines starting with
``/`` are commands: ``/reset`` starts the conversation again with the same image, ``/image PATH`` starts a new
one about another image, ``/quit`` ends (so does the end of the input). Logs go to standard error.

The ``--image`` file is checked before the model is loaded; a file that is missing or not an image we can read
(at start or after ``/image``) is reported with its path, and the conversation in progress goes on.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TextIO

from PIL import Image

from minigpt4.cli.common import (
    add_generation_args,
    add_model_args,
    check_generation_args,
    generation_options,
    load_chat,
)
from minigpt4.conversation.conversation import Chat, Conversation
from minigpt4.conversation.generation import GenerationConfig
from minigpt4.datasets.datasets.common import open_rgb

logger = logging.getLogger(__name__)

PROMPT = ">>> "


def read_image(path: str) -> Image.Image:
    """The image at ``path`` in RGB; a ``ValueError`` (or ``OSError``) naming the path in plain words if it cannot
    be used: missing, a folder, or not an image we can read."""
    if not os.path.exists(path):
        raise ValueError(f"no such image file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"this is a folder, not an image file: {path}")
    return open_rgb(path)  # UnreadableImage: "this file is not an image we can read: PATH (why)"


class TerminalChat:
    """A conversation about one image at a time, driven by lines of text."""

    def __init__(
        self, chat: Chat, template: Conversation, options: GenerationConfig, stream: bool, out: TextIO
    ) -> None:
        self.chat = chat
        self.template = template
        self.options = options
        self.stream = stream
        self.out = out
        self.image: str | None = None
        self.conv: Conversation | None = None
        self.img_list: list = []

    def start(self, image: str, loaded: Image.Image | None = None) -> None:
        """A new conversation about the image file ``image`` (``loaded``: that file, already read)."""
        picture = loaded if loaded is not None else read_image(image)  # raises before anything changes
        conv, img_list = self.template.copy(), []
        self.chat.upload_img(picture, conv, img_list)
        self.image, self.conv, self.img_list = image, conv, img_list
        logger.info("chatting about %s", image)

    def ask(self, question: str) -> str:
        assert self.conv is not None
        self.chat.ask(question, self.conv)
        if not self.stream:
            answer = self.chat.answer(self.conv, self.img_list, config=self.options)
            self.out.write(answer.text + "\n\n")
            self.out.flush()
            return answer.text
        stream = self.chat.answer(self.conv, self.img_list, stream=True, config=self.options)
        for piece in stream:
            self.out.write(piece)
            self.out.flush()
        self.out.write("\n\n")
        self.out.flush()
        return stream.text or ""

    def handle(self, line: str) -> bool:
        """Run one input line; False means stop."""
        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line == "/reset":
            self.start(self.image)  # type: ignore[arg-type]
            return True
        if line.startswith("/image "):
            self.start(line[len("/image ") :].strip())
            return True
        self.ask(line)
        return True


PROG = "python -m minigpt4.cli.chat"
EPILOG = """\
in-chat commands (without --question, one question or command per line on standard input):
  /image PATH   start a new conversation about another image
  /reset        start the conversation again with the same image
  /quit         end (so do /exit and the end of the input)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chat with MiniGPT-4 about an image in the terminal",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(parser)
    parser.add_argument("--image", required=True, help="the image to talk about")
    parser.add_argument(
        "--question", action="append", default=None, help="ask this (repeatable) and exit instead of reading stdin"
    )
    parser.add_argument("--stream", action="store_true", help="write answers as they are generated")
    parser.add_argument("--seed", type=int, default=None, help="seed the sampling")
    add_generation_args(parser)
    return check_generation_args(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    import torch

    from minigpt4.common.logger import setup_logger

    args = parse_args(argv)
    setup_logger()
    if args.seed is not None:
        torch.manual_seed(args.seed)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        first_image = read_image(args.image)  # before the model is loaded
    except (OSError, ValueError) as err:
        logger.error("%s", err)
        return 2
    loaded = load_chat(args)
    session = TerminalChat(loaded.chat, loaded.template, generation_options(args), args.stream, stdout)
    session.start(args.image, first_image)
    if args.question:
        for question in args.question:
            session.ask(question)
        return 0
    interactive = stdin.isatty()
    while True:
        if interactive:
            stdout.write(PROMPT)
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        try:
            if not session.handle(line):
                break
        except (OSError, ValueError) as err:  # e.g. /image with an unreadable file: keep the session going
            logger.error("%s", err)
    return 0


if __name__ == "__main__":
    from minigpt4.common.config import run_entry_point

    sys.exit(run_entry_point(main, prog=PROG))
