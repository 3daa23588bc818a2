"""Config: merge order, validation errors naming key and file, printing, round trips, --options parsing.

The components here are small stand-ins registered under names starting with ``_test`` so that the tests depend
only on the config machinery, not on the real models and datasets.
"""

import logging
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import pytest
from omegaconf import MISSING, OmegaConf

from minigpt4.common.config import Config, ConfigError, bounded, parse_options, path_field
from minigpt4.common.registry import registry


@dataclass
class _ModelSchema:
    arch: str = "_test_model"
    model_type: str = "base"
    width: int = 8
    depth: int = 2
    dropout: float = 0.0
    path: str = MISSING
    tags: List[str] = field(default_factory=list)
    note: Optional[str] = None


@dataclass
class _ProcSchema:
    image_size: int = 224
    mean: Optional[List[float]] = None


@dataclass
class _DataSchema:
    type: str = "default"
    data_type: str = "images"
    storage: str = MISSING
    sample_ratio: float = 1.0
    batch_size: Optional[int] = None
    vis_processor: Dict[str, Any] = field(default_factory=dict)
    text_processor: Dict[str, Any] = field(default_factory=dict)


class _FromDir:
    """Default YAMLs live in a per-test folder (``defaults_dir``), set by the ``world`` fixture."""

    defaults_dir = ""


@registry.register_model("_test_model")
class _TestModel(_FromDir):
    config_schema = _ModelSchema
    PRETRAINED_MODEL_CONFIG_DICT = {"base": "model_base.yaml", "big": "model_big.yaml"}
    DEFAULT_MODEL_TYPE = "base"

    @classmethod
    def default_config_path(cls, model_type: str) -> str:
        return os.path.join(cls.defaults_dir, cls.PRETRAINED_MODEL_CONFIG_DICT[model_type])


@registry.register_builder("_test_data")
class _TestBuilder(_FromDir):
    config_schema = _DataSchema
    DATASET_CONFIG_DICT = {"default": "data_defaults.yaml", "align": "data_align.yaml"}

    @classmethod
    def default_config_path(cls, type: str = "default", name: str | None = None) -> str:  # noqa: A002
        assert name == "_test_data"
        return os.path.join(cls.defaults_dir, cls.DATASET_CONFIG_DICT[type])


@registry.register_processor("_test_proc")
class _TestProc:
    config_schema = _ProcSchema


@registry.register_task("_test_task")
class _TestTask:
    pass


@registry.register_runner("_test_runner")
class _TestRunner:
    pass


MODEL_BASE = """
model:
  arch: _test_model
  width: 16
  depth: 3
  path: ???
preprocess:
  vis_processor:
    train: {name: _test_proc, image_size: 32}
"""
MODEL_BIG = """
model:
  width: 64
  path: /big/default
"""
DATA_DEFAULTS = """
datasets:
  _test_data:
    data_type: images
    storage: /defaults/storage
    sample_ratio: 5
    vis_processor:
      train: {name: _test_proc, image_size: 64}
"""
DATA_ALIGN = """
datasets:
  _test_data:
    storage: /align/storage
"""
USER = """
model:
  arch: _test_model
  model_type: base
  depth: 4
  path: /user/path
datasets:
  _test_data:
    sample_ratio: 7
run:
  task: _test_task
  runner: _test_runner
  init_lr: 3e-5
"""


class World:
    def __init__(self, root):
        self.root = root
        for name, text in [
            ("model_base.yaml", MODEL_BASE),
            ("model_big.yaml", MODEL_BIG),
            ("data_defaults.yaml", DATA_DEFAULTS),
            ("data_align.yaml", DATA_ALIGN),
        ]:
            (root / name).write_text(textwrap.dedent(text))
        _TestModel.defaults_dir = _TestBuilder.defaults_dir = str(root)

    def path(self, name):
        return str(self.root / name)

    def user(self, text=USER, name="user.yaml"):
        (self.root / name).write_text(textwrap.dedent(text))
        return self.path(name)

    def load(self, text=USER, options=None):
        return Config.load(self.user(text), options)

    def error(self, text=USER, options=None):
        with pytest.raises(ConfigError) as err:
            self.load(text, options)
        return str(err.value)


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def _edit(text, old, new):
    assert old in text
    return text.replace(old, new)


# merging -------------------------------------------------------------------------------------------------


def test_merge_order(world):
    cfg = world.load(options=["model.depth=5", "datasets._test_data.storage=/opt/storage", "run.max_epoch=3"])
    model = cfg.model_cfg
    assert model.width == 16  # model default YAML over the schema default 8
    assert model.depth == 5  # --options over the user YAML's 4 over the default's 3
    assert model.path == "/user/path"  # user YAML fills the default's ???
    assert model.dropout == 0.0  # schema default
    data = cfg.datasets_cfg._test_data
    assert data.storage == "/opt/storage"  # --options over the dataset default
    assert data.sample_ratio == 7  # user YAML over the dataset default 5
    assert data.vis_processor.train == {"name": "_test_proc", "image_size": 64, "mean": None}
    assert cfg.preprocess_cfg.vis_processor.train.image_size == 32
    run = cfg.run_cfg
    assert run.init_lr == 3e-5 and isinstance(run.init_lr, float)
    assert run.max_epoch == 3
    assert run.lr_sched == "linear_warmup_cosine_lr"  # RunConfig default


def test_model_type_selects_default_yaml(world):
    cfg = world.load(_edit(USER, "model_type: base", "model_type: big"))
    assert cfg.model_cfg.model_type == "big"
    assert cfg.model_cfg.width == 64


def test_default_model_type_when_unset(world):
    cfg = world.load(_edit(USER, "  model_type: base\n", ""))
    assert cfg.model_cfg.model_type == "base"
    assert cfg.model_cfg.width == 16


def test_dataset_type_selects_default_yaml(world):
    cfg = world.load(_edit(USER, "    sample_ratio: 7", "    type: align"))
    assert cfg.datasets_cfg._test_data.storage == "/align/storage"


def test_model_type_from_options(world):
    cfg = world.load(options=["model.model_type=big"])
    assert cfg.model_cfg.width == 64


# errors: key and file ---------------------------------------------------------------------------------------


def test_unknown_key_in_user_yaml(world):
    msg = world.error(_edit(USER, "  depth: 4", "  detph: 4"))
    assert world.path("user.yaml") in msg and "model.detph" in msg
    assert "width" in msg  # lists the known keys


def test_unknown_key_in_model_default_yaml(world):
    (world.root / "model_base.yaml").write_text(_edit(textwrap.dedent(MODEL_BASE), "  depth: 3", "  colour: red"))
    msg = world.error()
    assert world.path("model_base.yaml") in msg and "model.colour" in msg


def test_unknown_key_in_options(world):
    msg = world.error(options=["run.init_rl=1e-4"])
    assert msg.startswith("--options") and "run.init_rl" in msg


def test_unknown_dataset_key(world):
    msg = world.error(_edit(USER, "    sample_ratio: 7", "    sample_ration: 7"))
    assert world.path("user.yaml") in msg and "datasets._test_data.sample_ration" in msg


def test_unknown_processor_param(world):
    text = USER + "preprocess:\n  vis_processor:\n    train: {name: _test_proc, img_size: 3}\n"
    msg = world.error(text)
    assert world.path("user.yaml") in msg and "preprocess.vis_processor.train.img_size" in msg


def test_unknown_processor_name(world):
    text = _edit(USER, "    sample_ratio: 7", "    vis_processor:\n      train: {name: nope}")
    msg = world.error(text)
    assert world.path("user.yaml") in msg and "datasets._test_data.vis_processor.train.name" in msg
    assert "unknown processor 'nope'" in msg and "_test_proc" in msg


def test_wrong_type_in_user_yaml(world):
    msg = world.error(_edit(USER, "  depth: 4", "  depth: four"))
    assert world.path("user.yaml") in msg and "model.depth" in msg


def test_wrong_type_in_options(world):
    msg = world.error(options=["run.max_epoch=many"])
    assert msg.startswith("--options") and "run.max_epoch" in msg


def test_missing_required_value(world):
    msg = world.error(_edit(USER, "  path: /user/path\n", ""))
    assert "model.path" in msg and world.path("user.yaml") in msg
    assert world.path("model_base.yaml") in msg  # where the ??? came from
    assert "--options model.path=" in msg


def test_unknown_arch(world):
    msg = world.error(_edit(USER, "arch: _test_model", "arch: no_such_model"))
    assert world.path("user.yaml") in msg and "model.arch" in msg
    assert "unknown model 'no_such_model'" in msg and "_test_model" in msg


def test_missing_arch(world):
    msg = world.error(_edit(USER, "  arch: _test_model\n", ""))
    assert world.path("user.yaml") in msg and "model.arch" in msg


def test_unknown_model_type(world):
    msg = world.error(_edit(USER, "model_type: base", "model_type: huge"))
    assert world.path("user.yaml") in msg and "model.model_type" in msg and "big" in msg


def test_unknown_builder(world):
    msg = world.error(_edit(USER, "  _test_data:", "  no_such_data:"))
    assert world.path("user.yaml") in msg and "datasets.no_such_data" in msg
    assert "unknown builder 'no_such_data'" in msg and "_test_data" in msg


def test_unknown_task_in_options(world):
    msg = world.error(options=["run.task=no_such_task"])
    assert msg.startswith("--options") and "run.task" in msg and "_test_task" in msg


def test_unknown_task_in_yaml(world):
    msg = world.error(_edit(USER, "task: _test_task", "task: nope"))
    assert world.path("user.yaml") in msg and "run.task" in msg


def test_unknown_runner_and_scheduler(world):
    assert "run.runner" in world.error(options=["run.runner=nope"])
    msg = world.error(options=["run.lr_sched=nope"])
    assert "run.lr_sched" in msg and "linear_warmup_cosine_lr" in msg


def test_options_for_a_dataset_not_in_the_config(world):
    msg = world.error(options=["datasets.other.storage=/x"])
    assert msg.startswith("--options") and "datasets.other" in msg


def test_unknown_top_level_key(world):
    msg = world.error(USER + "trainer:\n  x: 1\n")
    assert world.path("user.yaml") in msg and "trainer" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        Config.load(tmp_path / "absent.yaml")


def test_bad_option_syntax(world):
    assert "key=value" in world.error(options=["run.seed"])


# printing, round trips, options --------------------------------------------------------------------------


def test_pretty_print_logs_every_section(world, caplog):
    cfg = world.load()
    with caplog.at_level(logging.INFO, logger="minigpt4.common.config"):
        cfg.pretty_print()
    for section in ("run", "datasets", "model", "preprocess"):
        assert f"===== {section} =====" in caplog.text
    assert "init_lr: 3.0e-05" in caplog.text or "init_lr: 3e-05" in caplog.text


def test_to_dict_round_trip(world, tmp_path):
    cfg = world.load(options=["model.tags=[a,b]"])
    plain = cfg.to_dict()
    assert isinstance(plain["model"], dict) and plain["model"]["tags"] == ["a", "b"]
    assert OmegaConf.create(plain) == cfg.config
    saved = tmp_path / "saved.yaml"
    saved.write_text(cfg.to_yaml())
    assert Config.load(saved).to_dict() == plain  # a run's config.yaml loads back to the same config


def test_options_are_yaml_values(world):
    cfg = world.load(
        options=[
            "run.train_splits=[train,val]",
            "run.amp=true",
            "run.job_name=null",
            "run.init_lr=1e-4",
            "run.warmup_steps=10",
            "model.note=hello world",
        ]
    )
    run = cfg.run_cfg
    assert list(run.train_splits) == ["train", "val"]
    assert run.amp is True
    assert run.job_name is None
    assert run.init_lr == 1e-4
    assert run.warmup_steps == 10
    assert cfg.model_cfg.note == "hello world"


def test_parse_options_nested():
    parsed = parse_options(["a.b.c=1", "a.d=[1, 2]", "e=x"])
    assert OmegaConf.to_container(parsed) == {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": "x"}
    assert OmegaConf.to_container(parse_options(None)) == {}


def test_config_from_args_object(world):
    class Args:
        cfg_path = world.user()
        options = ["run.seed=7"]

    assert Config(Args()).run_cfg.seed == 7


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("###", "###"),  # YAML would read a comment (null)
        ("###Human: {} ###Assistant: ", "###Human: {} ###Assistant: "),  # trailing space kept
        ("Q: {} A:", "Q: {} A:"),  # not valid YAML
        ("a: b", "a: b"),  # YAML would read a mapping
        ("null", None),
        ("", None),
    ],
)
def test_option_strings_yaml_would_mangle(world, raw, expected):
    cfg = world.load(options=[f"model.note={raw}"])
    assert cfg.model_cfg.note == expected


def test_option_flow_mapping_is_a_mapping():
    assert OmegaConf.to_container(parse_options(["a.b={x: 1}"])) == {"a": {"b": {"x": 1}}}


def test_required_marker_in_user_yaml_overrides_a_default(world):
    # the default YAML gives width 16; a config that says ??? means "you must set this"
    msg = world.error(_edit(USER, "  depth: 4", "  depth: 4\n  width: ???\n  note: ???"))
    assert "model.note" in msg and "width" in msg and world.path("user.yaml") in msg
    cfg = world.load(_edit(USER, "  depth: 4", "  depth: 4\n  note: ???"), options=["model.note=set"])
    assert cfg.model_cfg.note == "set"


def test_required_marker_in_dataset_section(world):
    msg = world.error(_edit(USER, "    sample_ratio: 7", "    storage: ???"))
    assert "datasets._test_data.storage" in msg


# YAML syntax errors, ranges, paths -------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_line_and_column(world):
    bad = "model:\n  arch: _test_model\n  depth: 4: 5\n"
    msg = world.error(bad)
    path = world.path("user.yaml")
    assert msg.startswith(f"{path}:3:11: could not parse YAML at line 3, column 11: mapping values are not allowed")
    assert msg.splitlines()[1].strip() == "depth: 4: 5" and msg.splitlines()[2].index("^") == 4 + 10


def test_yaml_unclosed_bracket_names_where_it_was_opened(world):
    msg = world.error("run:\n  train_splits: [train\n  seed: 1\n")
    first = msg.splitlines()[0]
    assert first.startswith(f"{world.path('user.yaml')}:3:7: could not parse YAML at line 3, column 7: ")
    assert first.endswith("(while parsing a flow sequence at line 2, column 17)")


@pytest.mark.parametrize(
    "option, key, rule",
    [
        ("run.batch_size_train=-3", "run.batch_size_train", "> 0"),
        ("run.init_lr=-0.5", "run.init_lr", ">= 0"),
        ("run.weight_decay=-0.1", "run.weight_decay", ">= 0"),
        ("run.beta2=1.0", "run.beta2", ">= 0 and < 1"),
        ("run.max_epoch=0", "run.max_epoch", "> 0"),
        ("run.iters_per_epoch=0", "run.iters_per_epoch", "> 0"),
        ("run.accum_grad_iters=0", "run.accum_grad_iters", "> 0"),
        ("run.num_workers=-1", "run.num_workers", ">= 0"),
    ],
)
def test_out_of_range_option_names_key_and_options(world, option, key, rule):
    msg = world.error(options=[option])
    assert msg == f"--options: {key}: {option.split('=')[1]} is out of range (must be {rule})"


def test_out_of_range_value_in_a_file_names_the_file(world):
    msg = world.error(_edit(USER, "init_lr: 3e-5", "init_lr: 3e-5\n  batch_size_eval: 0"))
    assert msg == f"{world.path('user.yaml')}: run.batch_size_eval: 0 is out of range (must be > 0)"


def test_optional_ranged_values_may_be_null(world):
    cfg = world.load(options=["run.iters_per_epoch=null", "run.save_freq=null"])
    assert cfg.run_cfg.iters_per_epoch is None and cfg.run_cfg.save_freq is None


def test_warmup_longer_than_the_run_is_an_error(world):
    msg = world.error(options=["run.max_epoch=2", "run.iters_per_epoch=10", "run.warmup_lr=0", "run.warmup_steps=21"])
    assert msg.startswith("--options: run.warmup_steps: 21 is more than the run's 20 iterations")
    # no warmup (warmup_lr < 0) or an open-ended epoch: nothing to compare
    world.load(options=["run.iters_per_epoch=10", "run.warmup_steps=500"])
    world.load(options=["run.warmup_lr=0", "run.warmup_steps=500"])


@dataclass
class _PathSchema:
    arch: str = "_test_paths"
    model_type: str = "base"
    weights: Optional[str] = path_field(None)
    folders: Dict[str, str] = path_field({}, kind="folder")
    ratio: float = bounded(0.5, ge=0, le=1)


@registry.register_model("_test_paths")
class _PathModel(_FromDir):
    config_schema = _PathSchema
    DEFAULT_MODEL_TYPE = "base"


def test_check_paths_lists_every_missing_path_once(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "present").mkdir()
    text = (
        f"model:\n  arch: _test_paths\n  weights: out/checkpoint_3.pth\n  folders: {{a: present, b: {tmp_path}/gone}}\n"
    )
    cfg = world.load(text, options=["model.folders.c=nowhere"])
    with pytest.raises(ConfigError) as err:
        cfg.check_paths()
    lines = str(err.value).splitlines()
    path = world.path("user.yaml")
    assert len(lines) == 3
    assert lines[0].startswith(f"{path}: model.weights: file not found: 'out/checkpoint_3.pth' (looked at ")
    assert lines[0].count(str(tmp_path / "out" / "checkpoint_3.pth")) == 1
    assert lines[1].startswith(f"{path}: model.folders.b: folder not found: '{tmp_path}/gone'")
    assert lines[2].startswith("--options: model.folders.c: folder not found: 'nowhere'")
    assert "http" not in str(err.value)
    assert world.error(text.replace("  weights", "  ratio: 1.5\n  weights")).endswith(
        "1.5 is out of range (must be >= 0 and <= 1)"
    )
