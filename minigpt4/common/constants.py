"""Constants shared by the model, the data pipeline and the chat (one place for each magic value)."""

from __future__ import annotations

# label value ignored by the cross-entropy loss (torch's default ``ignore_index``)
IGNORE_INDEX = -100

# where the image tokens go inside an instruction: "<Img><ImageHere></Img> Describe this image in detail."
IMAGE_PLACEHOLDER = "<ImageHere>"
IMAGE_START = "<Img>"
IMAGE_END = "</Img>"

# the published MiniGPT-4 pads with the string "$$" (LLaMA has no pad token of its own)
PAD_TOKEN = "$$"

# CLIP image normalisation (what EVA-CLIP was trained with)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# the published stage-2 instruction template of Vicuna v0: ``template.format(instruction)``
PROMPT_TEMPLATE_VICUNA0 = "###Human: {} ###Assistant: "

# chat: the system message of the published conversations (where an answer stops is the template's business:
# ``minigpt4/conversation/templates.py``)
SYSTEM_VICUNA0 = (
    "Give the following image: <Img>ImageContent</Img>. "
    "You will be able to see the image once I provide it to you. Please answer my questions."
)

# the LLaMA-2 variant (no Q-Former) concatenates this many neighbouring ViT patch tokens into one LLM token
LLAMA2_PATCH_GROUP = 4
