"""The registry: one table per kind, duplicates refused, unknown names explained, DESIGN's names present."""

import os

import pytest

import minigpt4
from minigpt4.common.registry import KINDS, Registry, RegistryError, registry

# every name DESIGN.md promises (kind -> names)
PUBLISHED_NAMES = {
    "processor": ["blip2_image_train", "blip2_image_eval", "blip_caption"],
    "builder": ["laion", "cc_sbu", "cc_sbu_align"],
    "task": ["image_text_pretrain"],
    "runner": ["runner_base"],
    "lr_scheduler": ["linear_warmup_cosine_lr", "linear_warmup_step_lr"],
    "model": ["mini_gpt4"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_register_and_get(kind):
    reg = Registry()

    @getattr(reg, f"register_{kind}")("thing")
    class Thing:
        pass

    assert getattr(reg, f"get_{kind}_class")("thing") is Thing
    assert reg.names(kind) == ["thing"]


def test_duplicate_name_fails_naming_both():
    reg = Registry()

    @reg.register_model("m")
    class A:
        pass

    with pytest.raises(RegistryError, match=r"model name 'm' is already registered to .*A.*cannot register .*B"):

        @reg.register_model("m")
        class B:
            pass

    assert reg.get_model_class("m") is A


def test_same_object_twice_is_harmless():
    reg = Registry()

    class A:
        pass

    reg.register_model("m")(A)
    reg.register_model("m")(A)
    assert reg.names("model") == ["m"]


def test_unknown_name_lists_known_names():
    reg = Registry()
    reg.register_task("alpha")(type("Alpha", (), {}))
    reg.register_task("beta")(type("Beta", (), {}))
    with pytest.raises(RegistryError) as err:
        reg.get_task_class("gamma")
    assert str(err.value) == "unknown task 'gamma'; known task names: alpha, beta"
    with pytest.raises(RegistryError, match=r"\(none registered\)"):
        reg.get_runner_class("x")


def test_unknown_kind():
    with pytest.raises(RegistryError, match="unknown registry kind"):
        Registry().register("widget", "x")


def test_paths_registered_once():
    reg = Registry()
    reg.register_path("library_root", "/a")
    reg.register_path("library_root", "/a")  # the same path again: harmless
    with pytest.raises(RegistryError, match="already registered"):
        reg.register_path("library_root", "/b")
    assert reg.get_path("library_root") == "/a"
    with pytest.raises(RegistryError, match="must be a string"):
        reg.register_path("other", 3)


def test_library_root_is_the_package_dir():
    root = registry.get_path("library_root")
    assert os.path.samefile(root, os.path.dirname(minigpt4.__file__))
    assert registry.get_path("cache_root")


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, names in PUBLISHED_NAMES.items() for n in names])
def test_published_names_are_registered(kind, name):
    assert name in registry.names(kind), f"{kind} {name!r} is not registered after `import minigpt4`"
    cls = registry.lookup(kind, name)
    assert cls.__module__.startswith("minigpt4.")


def test_public_methods_are_the_contract():
    """DESIGN.md's register_*/get_* pairs per kind, the path pair, and the generic register/lookup/names."""
    public = {name for name in dir(Registry) if not name.startswith("_")}
    per_kind = {
        f"{verb}_{kind}" + ("_class" if verb == "get" else "") for kind in KINDS for verb in ("register", "get")
    }
    assert public == per_kind | {"register_path", "get_path", "register", "lookup", "names"}
