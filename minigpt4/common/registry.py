"""The registry: one name -> class table per kind of component.

Components register themselves with a decorator at import time and are looked up by the names used in YAML
configs::

    @registry.register_model("mini_gpt4")
    class MiniGPT4(BaseModel): ...

    registry.get_model_class("mini_gpt4")

Every kind (builder, model, processor, task, runner, lr_scheduler) goes through the same generic mechanism
(:class:`_Table`): registering a name twice fails, and looking up an unknown name fails with the list of known
names of that kind. ``registry.names(kind)`` lists what is registered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

KINDS = ("builder", "model", "processor", "task", "runner", "lr_scheduler")


class RegistryError(KeyError):
    """An unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class _Table:
    """Names -> objects of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Any] = {}

    def add(self, name: str, obj: Any) -> None:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._items:
            if self._items[name] is obj:
                return  # the same object imported twice (e.g. a module reloaded): harmless
            raise RegistryError(
                f"{self.kind} name {name!r} is already registered to {_qualname(self._items[name])}; "
                f"cannot register {_qualname(obj)} under the same name"
            )
        self._items[name] = obj

    def get(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none registered)"
            raise RegistryError(f"unknown {self.kind} {name!r}; known {self.kind} names: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry:
    """Holds every registered component kind, plus named filesystem paths."""

    def __init__(self) -> None:
        self._tables = {kind: _Table(kind) for kind in KINDS}
        self._paths = _Table("path")

    # generic mechanism ------------------------------------------------------------------------------------
    def register(self, kind: str, name: str) -> Callable[[T], T]:
        """Decorator registering the decorated object as ``name`` of ``kind``."""
        table = self._table(kind)

        def wrap(obj: T) -> T:
            table.add(name, obj)
            return obj

        return wrap

    def lookup(self, kind: str, name: str) -> Any:
        return self._table(kind).get(name)

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        return self._table(kind).names()

    def _table(self, kind: str) -> _Table:
        if kind not in self._tables:
            raise RegistryError(f"unknown registry kind {kind!r}; kinds: {', '.join(KINDS)}")
        return self._tables[kind]

    # the public names (LAVIS-compatible) ----------------------------------------------------------------
    def register_builder(self, name: str) -> Callable[[T], T]:
        return self.register("builder", name)

    def register_model(self, name: str) -> Callable[[T], T]:
        return self.register("model", name)

    def register_processor(self, name: str) -> Callable[[T], T]:
        return self.register("processor", name)

    def register_task(self, name: str) -> Callable[[T], T]:
        return self.register("task", name)

    def register_runner(self, name: str) -> Callable[[T], T]:
        return self.register("runner", name)

    def register_lr_scheduler(self, name: str) -> Callable[[T], T]:
        return self.register("lr_scheduler", name)

    def get_builder_class(self, name: str) -> Any:
        return self.lookup("builder", name)

    def get_model_class(self, name: str) -> Any:
        return self.lookup("model", name)

    def get_processor_class(self, name: str) -> Any:
        return self.lookup("processor", name)

    def get_task_class(self, name: str) -> Any:
        return self.lookup("task", name)

    def get_runner_class(self, name: str) -> Any:
        return self.lookup("runner", name)

    def get_lr_scheduler_class(self, name: str) -> Any:
        return self.lookup("lr_scheduler", name)

    # paths -------------------------------------------------------------------------------------------------
    def register_path(self, name: str, path: str) -> None:
        """Register a named filesystem path (``library_root``, ``cache_root``); each name once."""
        if not isinstance(path, str):
            raise RegistryError(f"path {name!r} must be a string, got {type(path).__name__}")
        if name in self._paths and self._paths.get(name) == path:
            return  # the same path again (e.g. the package re-imported): harmless
        self._paths.add(name, path)

    def get_path(self, name: str) -> str:
        return self._paths.get(name)


registry = Registry()
