"""minigpt4: MiniGPT-4 training, evaluation and chat.

Importing the package registers every component (models, processors, dataset builders, tasks, runners,
LR schedulers) so that configs can refer to them by name.
"""

import os

from minigpt4.common.registry import registry

__version__ = "0.1.0"

registry.register_path("library_root", os.path.dirname(os.path.abspath(__file__)))
registry.register_path(
    "cache_root", os.path.expanduser(os.environ.get("MINIGPT4_CACHE_ROOT", os.path.join("~", ".cache", "minigpt4")))
)

from minigpt4 import common, conversation, datasets, models, processors, runners, tasks  # noqa: E402

__all__ = ["common", "conversation", "datasets", "models", "processors", "registry", "runners", "tasks"]
