"""Chat templates: the :class:`Conversation` class and the registered templates, looked up by name.

``model.conv_template`` names a template of :data:`CONV_TEMPLATES`; :func:`template_for` is the one lookup the
chat, the demo and the command-line tools use::

    >>> conv = template_for(cfg.model_cfg).copy()   # model.conv_template: vicuna0
    >>> conv.append_message(conv.roles[0], "<Img><ImageHere></Img> What is this?")
    >>> conv.append_message(conv.roles[1], None)
    >>> conv.get_prompt()
    'Give the following image: ... Please answer my questions.###Human: <Img><ImageHere></Img> What is this?###Assistant: '

A template also says where an answer stops (:attr:`Conversation.stop_strings`; the end-of-sequence token always
ends one). Adding a template: one entry in :data:`CONV_TEMPLATES`.
"""

from __future__ import annotations

import dataclasses
from enum import Enum, auto
from typing import Any, NamedTuple

from minigpt4.common.constants import IMAGE_END, IMAGE_PLACEHOLDER, IMAGE_START, SYSTEM_VICUNA0

IMAGE_MESSAGE = f"{IMAGE_START}{IMAGE_PLACEHOLDER}{IMAGE_END}"
"""The user message that stands for an uploaded image."""


class SeparatorStyle(Enum):
    """How messages are separated: ``SINGLE`` puts ``sep`` after every message, ``TWO`` alternates ``sep``/``sep2``."""

    SINGLE = auto()
    TWO = auto()


class AnswerIds(NamedTuple):
    """The generated token ids of one assistant message: ``text`` (the message they decode to), ``ids``, and
    whether they also hold the separator that follows the message (the stop string the model generated)."""

    text: str
    ids: tuple[int, ...]
    with_sep: bool


@dataclasses.dataclass
class Conversation:
    """A chat template and the messages of one conversation.

    Args:
        system: text before the first message.
        roles: (user role, assistant role) prefixes, rendered verbatim (``"Human: "``).
        messages: ``[role, text]`` pairs; the text of the last assistant message is None while it is generated.
        offset: number of leading messages that are part of the template (not shown in a chat window).
        sep_style: :class:`SeparatorStyle`.
        sep: separator after the system prompt and each message; also where an answer stops.
        sep2: second separator for :attr:`SeparatorStyle.TWO` (after assistant messages).
        stop: the strings that end an assistant answer (besides the end-of-sequence token); None: the separator
            that follows an answer.
    """

    system: str
    roles: tuple[str, str]
    messages: list[list[str | None]]
    offset: int = 0
    sep_style: SeparatorStyle = SeparatorStyle.SINGLE
    sep: str = "###"
    sep2: str | None = None
    stop: tuple[str, ...] | None = None
    kv_cache: Any = dataclasses.field(default=None, repr=False, compare=False)
    """Keys/values of the context the model has already seen (a ``conversation.PrefixCache``; not copied by
    :meth:`copy`)."""
    answer_ids: dict[int, AnswerIds] = dataclasses.field(default_factory=dict, repr=False, compare=False)
    """Token ids the model generated for assistant messages, by message index (see :meth:`prompt_pieces`)."""

    @property
    def _seps(self) -> tuple[str, str]:
        """The separators after user and after assistant messages."""
        return (self.sep, self.sep) if self.sep_style == SeparatorStyle.SINGLE else (self.sep, self.sep2 or "")

    def get_prompt(self) -> str:
        seps = self._seps
        prompt = self.system + seps[0]
        for i, (role, message) in enumerate(self.messages):
            if message:
                prompt += role + message + seps[i % 2]
            else:
                prompt += role
        return prompt

    def prompt_pieces(self) -> list[str | list[int]]:
        """The prompt of :meth:`get_prompt` as text pieces and token-id pieces.

        An assistant message whose generated token ids were kept (:attr:`answer_ids`, still matching the message
        text) is given as those ids, so the model sees again exactly the tokens it produced (re-tokenizing the
        decoded text can give other ids, e.g. at the space after ``Assistant:``); everything else is text.
        Without kept ids this is ``[get_prompt()]``.
        """
        seps = self._seps
        pieces: list[str | list[int]] = [self.system + seps[0]]
        for i, (role, message) in enumerate(self.messages):
            kept = self.answer_ids.get(i)
            if message and kept is not None and kept.text == message:
                pieces[-1] += role  # type: ignore[operator]
                pieces += [list(kept.ids), "" if kept.with_sep else seps[i % 2]]
            elif message:
                pieces[-1] += role + message + seps[i % 2]  # type: ignore[operator]
            else:
                pieces[-1] += role  # type: ignore[operator]
        return pieces

    def append_message(self, role: str, message: str | None) -> None:
        self.messages.append([role, message])

    @property
    def stop_strings(self) -> list[str]:
        """Strings that end an assistant answer: :attr:`stop`, else the separator that follows an answer."""
        if self.stop is not None:
            return [s for s in self.stop if s]
        stop = self.sep if self.sep_style == SeparatorStyle.SINGLE else self.sep2
        return [stop] if stop else []

    def to_gradio_chatbot(self) -> list[dict[str, str]]:
        """The visible messages as Gradio ``Chatbot`` messages (``{"role": "user"|"assistant", "content": ...}``).

        The image placeholder is dropped from user messages; an empty message is skipped.
        """
        chat = []
        for role, message in self.messages[self.offset :]:
            text = (message or "").replace(IMAGE_MESSAGE, "").strip()
            if text:
                chat.append({"role": "user" if role == self.roles[0] else "assistant", "content": text})
        return chat

    def copy(self) -> Conversation:
        """A fresh copy with its own message list and no cached context."""
        return dataclasses.replace(
            self, messages=[list(m) for m in self.messages], kv_cache=None, answer_ids=dict(self.answer_ids)
        )

    def dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "roles": self.roles,
            "messages": self.messages,
            "offset": self.offset,
            "sep": self.sep,
            "sep2": self.sep2,
            "stop": self.stop,
        }


# ----------------------------------------------------------------------------------------------------------
# the registered templates
# ----------------------------------------------------------------------------------------------------------

#: the published MiniGPT-4 demo stops every answer at "###" (token ids 835 or 2277 29937 in LLaMA's vocabulary)
#: and at the end-of-sequence token, for Vicuna v0 and LLaMA-2 alike, and cuts the text at "###"
PUBLISHED_STOP = ("###",)

CONV_VISION_Vicuna0 = Conversation(
    system=SYSTEM_VICUNA0,
    roles=("Human: ", "Assistant: "),
    messages=[],
    sep_style=SeparatorStyle.SINGLE,
    sep="###",
    stop=PUBLISHED_STOP,
)

CONV_VISION_LLama2 = Conversation(
    system=SYSTEM_VICUNA0,
    roles=("<s>[INST] ", " [/INST] "),
    messages=[],
    sep_style=SeparatorStyle.SINGLE,
    sep="",
    stop=PUBLISHED_STOP,
)

#: ChatML, the format of Qwen2's chat models; an answer ends with <|im_end|>, its end-of-sequence token
CONV_VISION_Qwen2 = Conversation(
    system="<|im_start|>system\n" + SYSTEM_VICUNA0,
    roles=("<|im_start|>user\n", "<|im_start|>assistant\n"),
    messages=[],
    sep_style=SeparatorStyle.SINGLE,
    sep="<|im_end|>\n",
    stop=(),
)

CONV_TEMPLATES: dict[str, Conversation] = {
    "vicuna0": CONV_VISION_Vicuna0,
    "llama2": CONV_VISION_LLama2,
    "qwen2": CONV_VISION_Qwen2,
}
"""``model.conv_template`` -> template."""


def get_conv_template(name: str) -> Conversation:
    """The registered template ``name`` (a clear error naming ``model.conv_template`` otherwise)."""
    if name not in CONV_TEMPLATES:
        known = ", ".join(sorted(CONV_TEMPLATES))
        raise ValueError(f"model.conv_template: unknown chat template {name!r}; known: {known}")
    return CONV_TEMPLATES[name]


def template_for(model_cfg: Any) -> Conversation:
    """The chat template of a model config: the template registered as ``model_cfg.conv_template``."""
    name = getattr(model_cfg, "conv_template", None)
    if not name:
        raise ValueError("model.conv_template is not set: name a chat template (" + ", ".join(CONV_TEMPLATES) + ")")
    return get_conv_template(str(name))
