"""Chat templates and the ``Chat`` wrapper (``minigpt4.conversation.conversation``)."""

from minigpt4.conversation.conversation import (
    Chat,
    CONV_VISION_LLama2,
    CONV_VISION_Vicuna0,
    Conversation,
    SeparatorStyle,
)

__all__ = ["CONV_VISION_LLama2", "CONV_VISION_Vicuna0", "Chat", "Conversation", "SeparatorStyle"]
