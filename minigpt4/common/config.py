"""Configuration: one merged, validated tree built from YAML files and ``--options``.

``Config(args)`` merges, in this order (later wins):

1. the model's default YAML, chosen by ``model.arch`` + ``model.model_type``
   (``ModelClass.default_config_path(model_type)``);
2. each dataset's default YAML, chosen by the builder name and its ``type`` (``default`` unless set)
   (``BuilderClass.default_config_path(type, name=name)``);
3. the user's YAML (``--cfg-path``);
4. ``--options a.b=c ...`` (values parsed as YAML, so ``x=1e-4``, ``x=[train]``, ``x=null`` work).

Every section is validated against the one schema (a dataclass) of the thing it configures:

- ``model``: ``ModelClass.config_schema``;
- ``datasets.<name>``: ``BuilderClass.config_schema``; each ``vis_processor`` / ``text_processor`` split
  (``{name: ..., **params}``) against ``ProcessorClass.config_schema``; the same for the model default's
  ``preprocess`` section;
- ``run``: :class:`minigpt4.common.run_config.RunConfig`;
- ``evaluation`` (``evaluate.py``): :class:`minigpt4.evaluation.config.EvaluationConfig`.

An unknown key, a wrong type, a value out of its declared range, a missing required value (``???``) or an unknown
component name raises :class:`ConfigError` naming the dotted key and the file (or ``--options``) it came from.
Nothing heavy is built here: validation only imports the component classes.

Schemas declare more than types through dataclass field metadata, read by one generic walk over the validated
tree: :func:`bounded` gives a field its allowed range (``batch_size_train: int = bounded(1, gt=0)``) and
:func:`path_field` marks a field as a local path of some kind (a model file, webdataset shards, a folder), which
:meth:`Config.check_paths` checks on disk before anything is built.

Entry points run their ``main`` through :func:`run_entry_point`: a :class:`ConfigError` (or another error about
the user's input, :data:`USER_ERRORS`) is printed as one line on stderr with exit code 2; ``--debug`` or
``MINIGPT4_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from minigpt4.common.registry import RegistryError, registry

logger = logging.getLogger(__name__)

OPTIONS_LABEL = "--options"
TOP_LEVEL_KEYS = ("model", "datasets", "run", "preprocess", "evaluation")
PROCESSOR_SECTIONS = ("vis_processor", "text_processor")


class ConfigError(ValueError):
    """A configuration problem, with the dotted key and the file it came from in the message."""


class InputFileError(ValueError):
    """An input file the configuration points at (an annotation file, ...) that cannot be used; the message names
    the file and, where it applies, the line and column."""


# ----------------------------------------------------------------------------------------------------------
# ranges and paths, declared next to the schema fields
# ----------------------------------------------------------------------------------------------------------

RANGE_METADATA = "minigpt4.range"
PATH_METADATA = "minigpt4.path"


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a number: any of ``gt`` (>), ``ge`` (>=), ``lt`` (<), ``le`` (<=) that is set."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def allows(self, value: float) -> bool:
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def __str__(self) -> str:
        bounds = ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
        return " and ".join(f"{op} {bound:g}" for op, bound in bounds if bound is not None)


def bounded(
    default: Any = dataclasses.MISSING,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Any:
    """A dataclass field whose value must lie in a range (None, for an Optional field, is always allowed).

    ``batch_size_train: int = bounded(1, gt=0)``; ``beta2: float = bounded(0.999, ge=0, lt=1)``.
    """
    return dataclasses.field(default=default, metadata={RANGE_METADATA: Range(gt=gt, ge=ge, lt=lt, le=le)})


PATH_KINDS = ("model", "shards", "folder")


def path_field(default: Any = dataclasses.MISSING, *, kind: str = "model") -> Any:
    """A dataclass field that holds a local path, checked by :meth:`Config.check_paths` before anything is built.

    ``kind``: ``model`` (a file or folder of weights, a prompt file: relative paths are tried against the current
    directory, then the repository root), ``shards`` (webdataset brace patterns, several joined by ``::``) or
    ``folder`` (a data folder). A mapping field (``{split: path}``) has each value checked. Empty values and None
    are not checked (the code reading the key decides whether one is needed).
    """
    if kind not in PATH_KINDS:
        raise ValueError(f"unknown path kind {kind!r}; known: {', '.join(PATH_KINDS)}")
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata={PATH_METADATA: kind})
    return dataclasses.field(default=default, metadata={PATH_METADATA: kind})


def _walk(node: Any, prefix: str) -> Iterable[tuple[str, Any, dataclasses.Field]]:
    """``(dotted key, value, field)`` of every set schema field under a validated (structured) node, nested
    dataclasses and mappings of them included; nothing for a plain mapping."""
    if not isinstance(node, DictConfig):
        return
    schema = OmegaConf.get_type(node)
    for f in dataclasses.fields(schema) if dataclasses.is_dataclass(schema) else ():
        if f.name not in node or OmegaConf.is_missing(node, f.name):
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = node[f.name]
        yield key, value, f
        if not isinstance(value, DictConfig):
            continue
        if dataclasses.is_dataclass(OmegaConf.get_type(value)):
            yield from _walk(value, key)
        else:
            for sub in value:
                if not OmegaConf.is_missing(value, sub):
                    yield from _walk(value[sub], f"{key}.{sub}")


def check_ranges(node: Any, prefix: str, origins: _Origins, fallback: str) -> None:
    """Raise :class:`ConfigError` for the first field whose value is outside its :func:`bounded` range."""
    for key, value, f in _walk(node, prefix):
        allowed = f.metadata.get(RANGE_METADATA)
        if allowed is None or value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not allowed.allows(value):
            raise ConfigError(f"{origins.of(key, fallback)}: {key}: {value!r} is out of range (must be {allowed})")


# ----------------------------------------------------------------------------------------------------------
# loading and provenance
# ----------------------------------------------------------------------------------------------------------


def load_yaml(path: str | os.PathLike[str]) -> DictConfig:
    """Load one YAML mapping; a missing or malformed file fails naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except yaml.MarkedYAMLError as err:
        raise ConfigError(_yaml_error_message(path, err)) from err
    except Exception as err:  # other yaml.YAMLError and friends
        raise ConfigError(f"{path}: could not parse YAML: {err}") from err
    if cfg is None:
        return OmegaConf.create({})
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level, got a {type(cfg).__name__}")
    return cfg


def _yaml_error_message(path: str, err: yaml.MarkedYAMLError) -> str:
    """``file:line:column: could not parse YAML at line L, column C: problem``, then the line and a caret."""
    mark = err.problem_mark or err.context_mark
    problem = err.problem or err.context or "invalid YAML"
    if mark is None:
        return f"{path}: could not parse YAML: {problem}"
    line, column = mark.line + 1, mark.column + 1
    message = f"{path}:{line}:{column}: could not parse YAML at line {line}, column {column}: {problem}"
    if err.context and err.problem and err.context_mark is not None:
        message += f" ({err.context} at line {err.context_mark.line + 1}, column {err.context_mark.column + 1})"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().splitlines()[mark.line]
    except (OSError, IndexError, UnicodeDecodeError):
        return message
    return f"{message}\n    {text}\n    {' ' * mark.column}^"


_NULL_WORDS = frozenset({"null", "Null", "NULL", "~"})


def _option_value(key: str, raw: str) -> Any:
    """One ``--options`` value, parsed as YAML except where YAML would silently change a plain string.

    ``###`` (YAML reads a comment, i.e. null) and ``Q: {} A:`` (a mapping, or not YAML at all) stay the text
    they are, so prompt templates and stop strings can be given on the command line.
    """
    try:
        value = OmegaConf.select(OmegaConf.from_dotlist([f"{key}={raw}"]), key)
    except (OmegaConfBaseException, yaml.YAMLError):
        return raw
    text = raw.strip()
    if value is None and text and text not in _NULL_WORDS:
        return raw
    if isinstance(value, DictConfig) and not text.startswith("{"):
        return raw
    return value


def parse_options(options: Sequence[str] | None) -> DictConfig:
    """``["run.init_lr=1e-4", "run.train_splits=[train]"]`` -> a nested config (values parsed as YAML).

    ``key=null`` / ``key=`` give None; a value YAML cannot read as intended (``model.end_sym=###``,
    ``model.prompt_template=Q: {} A:``) is kept as the string it is.
    """
    result = OmegaConf.create({})
    for item in options or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{OPTIONS_LABEL}: expected key=value with a dotted key, got {item!r}")
        try:
            OmegaConf.update(result, key, _option_value(key, raw), merge=True, force_add=True)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{OPTIONS_LABEL}: could not parse {item!r}: {err}") from err
    return result


def _leaf_keys(node: Any, prefix: str) -> Iterable[str]:
    if isinstance(node, DictConfig | Mapping):
        items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else node.items()
        empty = True
        for key, value in items:
            empty = False
            yield from _leaf_keys(value, f"{prefix}.{key}" if prefix else str(key))
        if empty and prefix:
            yield prefix
    else:
        yield prefix


class _Origins:
    """Remembers which source (file or ``--options``) last set each dotted key."""

    def __init__(self) -> None:
        self._origin: dict[str, str] = {}

    def record(self, node: Any, prefix: str, label: str) -> None:
        if isinstance(node, DictConfig | Mapping) and len(node) == 0:
            return
        for key in _leaf_keys(node, prefix):
            self._origin[key] = label

    def of(self, key: str, fallback: str) -> str:
        """The source of ``key`` or, failing that, of its nearest recorded parent or child."""
        probe = key
        while probe:
            if probe in self._origin:
                return self._origin[probe]
            probe = probe.rpartition(".")[0]
        children = [label for k, label in self._origin.items() if k.startswith(key + ".")]
        return children[-1] if children else fallback

    def sources(self, key: str) -> list[str]:
        """Every source that set ``key`` or something under it, in merge order, without repeats."""
        labels = [label for k, label in self._origin.items() if k == key or k.startswith(key + ".")]
        return list(dict.fromkeys(labels))


def _section(cfg: DictConfig | None, key: str) -> Any:
    if cfg is None:
        return None
    return cfg.get(key) if isinstance(cfg, DictConfig) else None


def _merge_sources(sources: Sequence[tuple[str, Any]], prefix: str, origins: _Origins) -> DictConfig:
    """Merge plain (unvalidated) sections, recording who set what."""
    merged = OmegaConf.create({})
    for label, node in sources:
        if node is None:
            continue
        if not isinstance(node, DictConfig | Mapping):
            raise ConfigError(f"{label}: {prefix}: expected a mapping, got {node!r}")
        origins.record(node, prefix, label)
        merged = _merge_keeping_missing(merged, node)
    return merged


def _merge_keeping_missing(base: DictConfig, node: Any) -> DictConfig:
    """``OmegaConf.merge(base, node)``, except that a ``???`` in ``node`` marks the key required again.

    (OmegaConf's merge ignores ``???`` over an existing value, which would let a config that says "this path is
    required" silently inherit a default.)
    """
    merged = OmegaConf.merge(base, node)
    # a detached copy, so that the missing keys are relative to this section
    plain = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else dict(node)
    for key in OmegaConf.missing_keys(OmegaConf.create(plain)):
        OmegaConf.update(merged, key, MISSING, force_add=True)
    return merged


# ----------------------------------------------------------------------------------------------------------
# validation against schemas
# ----------------------------------------------------------------------------------------------------------


def validate(schema: type, node: Any, prefix: str, origins: _Origins, fallback: str) -> DictConfig:
    """Merge ``node`` into the structured schema; errors name the key and the file that set it."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass schema")
    base = OmegaConf.structured(schema)
    try:
        merged = _merge_keeping_missing(base, node)
    except ConfigKeyError as err:
        key = _full_key(prefix, err)
        known = ", ".join(f.name for f in dataclasses.fields(schema))
        raise ConfigError(
            f"{origins.of(key, fallback)}: unknown key {key!r} (known keys of {prefix or 'this section'}: {known})"
        ) from None
    except ValidationError as err:
        key = _full_key(prefix, err)
        raise ConfigError(f"{origins.of(key, fallback)}: {key}: {_reason(err)}") from None
    check_ranges(merged, prefix, origins, fallback)
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        key = f"{prefix}.{missing[0]}" if prefix else missing[0]
        declared = origins.sources(key) or ["the schema"]
        others = f" (and {len(missing) - 1} more: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise ConfigError(
            f"{fallback}: required value {key!r} is not set (it is '???' in {', '.join(declared)}){others}; "
            f"set it in the config file or with --options {key}=..."
        )
    return merged


def _full_key(prefix: str, err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None) or ""
    key = str(key)
    return f"{prefix}.{key}" if prefix and key else (prefix or key)


def _reason(err: OmegaConfBaseException) -> str:
    msg = getattr(err, "msg", None) or str(err)
    return msg.splitlines()[0]


def _lookup(kind: str, name: Any, key: str, origins: _Origins, fallback: str) -> Any:
    try:
        return registry.lookup(kind, name)
    except RegistryError as err:
        raise ConfigError(f"{origins.of(key, fallback)}: {key}: {err}") from None


def _default_path(
    cls: type, attr: str, type_name: str, key: str, origins: _Origins, fallback: str, **kwargs: Any
) -> str | None:
    table: Mapping[str, str] = getattr(cls, attr, {}) or {}
    if not table:
        return None
    if type_name not in table:
        raise ConfigError(
            f"{origins.of(key, fallback)}: {key}: unknown value {type_name!r} for {cls.__name__}; "
            f"known: {', '.join(sorted(table))}"
        )
    return cls.default_config_path(type_name, **kwargs)


def _validate_processors(node: DictConfig, prefix: str, origins: _Origins, fallback: str) -> None:
    """Each ``{split: {name, **params}}`` entry against its processor's schema, in place."""
    for section in PROCESSOR_SECTIONS:
        splits = node.get(section)
        if splits is None:
            continue
        for split, proc in list(splits.items()):
            key = f"{prefix}.{section}.{split}"
            if not isinstance(proc, DictConfig) or "name" not in proc:
                raise ConfigError(f"{origins.of(key, fallback)}: {key}: expected a mapping with a 'name'")
            proc_cls = _lookup("processor", proc.name, f"{key}.name", origins, fallback)
            params = OmegaConf.masked_copy(proc, [k for k in proc if k != "name"])
            checked = validate(proc_cls.config_schema, params, key, origins, fallback)
            splits[split] = OmegaConf.merge({"name": proc.name}, checked)


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------


class Config:
    """The merged, validated configuration of one job.

    Args:
        args: an object with ``cfg_path`` (the user's YAML) and ``options`` (list of ``key=value`` strings
            or None), e.g. the parsed command line of ``train.py``.
    """

    def __init__(self, args: Any) -> None:
        import minigpt4  # noqa: F401  (registers every component so names resolve)

        self.cfg_path = os.fspath(args.cfg_path)
        user = load_yaml(self.cfg_path)
        options = parse_options(getattr(args, "options", None))
        for label, node in ((self.cfg_path, user), (OPTIONS_LABEL, options)):
            unknown = [k for k in node if k not in TOP_LEVEL_KEYS]
            if unknown:
                raise ConfigError(f"{label}: unknown top-level key {unknown[0]!r} (known: {', '.join(TOP_LEVEL_KEYS)})")
        self._origins = _Origins()
        model, preprocess = self._build_model(user, options)
        datasets = self._build_datasets(user, options)
        run = self._build_run(user, options)
        evaluation = self._build_evaluation(user, options)
        self.config: DictConfig = OmegaConf.create(
            {"model": model, "preprocess": preprocess, "datasets": datasets, "run": run, "evaluation": evaluation}
        )

    @classmethod
    def load(cls, cfg_path: str | os.PathLike[str], options: Sequence[str] | None = None) -> Config:
        """Convenience constructor: ``Config.load("train_configs/x.yaml", ["run.seed=1"])``."""
        return cls(_Args(os.fspath(cfg_path), list(options or [])))

    # sections -------------------------------------------------------------------------------------------
    def _build_model(self, user: DictConfig, options: DictConfig) -> tuple[DictConfig, DictConfig]:
        fallback = self.cfg_path
        user_model, option_model = _section(user, "model"), _section(options, "model")
        head = OmegaConf.merge(user_model or {}, option_model or {})
        if "arch" not in head:
            raise ConfigError(f"{self.cfg_path}: required value 'model.arch' is not set")
        origins = _Origins()
        origins.record(user_model or {}, "model", self.cfg_path)
        origins.record(option_model or {}, "model", OPTIONS_LABEL)
        model_cls = _lookup("model", head.arch, "model.arch", origins, fallback)
        model_type = head.get("model_type") or getattr(model_cls, "DEFAULT_MODEL_TYPE", None)
        default = _default_path(
            model_cls, "PRETRAINED_MODEL_CONFIG_DICT", model_type, "model.model_type", origins, fallback
        )
        defaults = load_yaml(default) if default else OmegaConf.create({})
        self._origins = origins = _Origins()
        merged = _merge_sources(
            [
                (default or "", _section(defaults, "model")),
                (self.cfg_path, user_model),
                (OPTIONS_LABEL, option_model),
            ],
            "model",
            origins,
        )
        merged.model_type = model_type
        model = validate(model_cls.config_schema, merged, "model", origins, fallback)
        preprocess = _merge_sources(
            [
                (default or "", _section(defaults, "preprocess")),
                (self.cfg_path, _section(user, "preprocess")),
                (OPTIONS_LABEL, _section(options, "preprocess")),
            ],
            "preprocess",
            origins,
        )
        unknown = [k for k in preprocess if k not in PROCESSOR_SECTIONS]
        if unknown:
            key = f"preprocess.{unknown[0]}"
            raise ConfigError(
                f"{origins.of(key, fallback)}: unknown key {key!r} (known: vis_processor, text_processor)"
            )
        _validate_processors(preprocess, "preprocess", origins, fallback)
        return model, preprocess

    def _build_datasets(self, user: DictConfig, options: DictConfig) -> DictConfig:
        origins, fallback = self._origins, self.cfg_path
        user_sets = _section(user, "datasets") or OmegaConf.create({})
        option_sets = _section(options, "datasets") or OmegaConf.create({})
        for name in option_sets:
            if name not in user_sets:
                raise ConfigError(
                    f"{OPTIONS_LABEL}: datasets.{name}: not a dataset of {self.cfg_path} "
                    f"(its datasets: {', '.join(user_sets) or 'none'})"
                )
        result = {}
        for name in user_sets:
            prefix = f"datasets.{name}"
            origins.record(user_sets[name] or {}, prefix, self.cfg_path)
            builder_cls = _lookup("builder", name, prefix, origins, fallback)
            head = OmegaConf.merge(user_sets[name] or {}, option_sets.get(name) or {})
            type_name = head.get("type", "default")
            default = _default_path(
                builder_cls, "DATASET_CONFIG_DICT", type_name, f"{prefix}.type", origins, fallback, name=name
            )
            defaults = load_yaml(default) if default else OmegaConf.create({})
            default_entry = _section(_section(defaults, "datasets"), name)
            merged = _merge_sources(
                [
                    (default or "", default_entry),
                    (self.cfg_path, user_sets[name]),
                    (OPTIONS_LABEL, option_sets.get(name)),
                ],
                prefix,
                origins,
            )
            checked = validate(builder_cls.config_schema, merged, prefix, origins, fallback)
            _validate_processors(checked, prefix, origins, fallback)
            check_splits = getattr(builder_cls, "check_splits", None)
            if check_splits is not None:
                try:
                    check_splits(checked, prefix)
                except ValueError as err:
                    raise ConfigError(f"{origins.of(f'{prefix}.splits', fallback)}: {err}") from None
            result[name] = checked
        return OmegaConf.create(result)

    def _build_run(self, user: DictConfig, options: DictConfig) -> DictConfig:
        from minigpt4.common.run_config import RunConfig

        origins, fallback = self._origins, self.cfg_path
        merged = _merge_sources(
            [(self.cfg_path, _section(user, "run")), (OPTIONS_LABEL, _section(options, "run"))], "run", origins
        )
        run = validate(RunConfig, merged, "run", origins, fallback)
        _check_warmup(run, origins, fallback)
        _lookup("task", run.task, "run.task", origins, fallback)
        _lookup("runner", run.runner, "run.runner", origins, fallback)
        if run.lr_sched is not None:
            _lookup("lr_scheduler", run.lr_sched, "run.lr_sched", origins, fallback)
        return run

    # paths ----------------------------------------------------------------------------------------------
    def check_paths(self) -> None:
        """Check every path key on disk (the schema fields declared with :func:`path_field`): model weights and
        the prompt file, dataset storage. Entry points call this before building anything.

        Raises:
            ConfigError: listing every path that does not exist, one line each, with its key, the file (or
                ``--options``) that set it and the places looked at.
        """
        problems = [problem for _, _, problem in self.path_report() if problem]
        if problems:
            raise ConfigError("\n".join(problems))

    def path_report(self) -> list[tuple[str, str, str | None]]:
        """``(dotted key, path, problem)`` for every set path key, in schema order; ``problem`` is None when the
        path exists, else the message :meth:`check_paths` raises (key, the file that set it, places looked at)."""
        sections = [("model", self.config.model), ("run", self.config.run)]
        sections += [(f"datasets.{name}", node) for name, node in self.config.datasets.items()]
        report = []
        for prefix, section in sections:
            for key, value, f in _walk(section, prefix):
                kind = f.metadata.get(PATH_METADATA)
                if kind is None or value is None:
                    continue
                entries = value.items() if isinstance(value, DictConfig) else [(None, value)]
                for sub, path in entries:
                    if path in (None, ""):
                        continue
                    full = key if sub is None else f"{key}.{sub}"
                    problem = _path_problem(kind, path, full)
                    if problem:
                        problem = f"{self._origins.of(full, self.cfg_path)}: {problem}"
                    report.append((full, str(path), problem))
        return report

    def origin_of(self, key: str) -> str:
        """The file (or ``--options``) that set the dotted ``key`` (its nearest set parent or child)."""
        return self._origins.of(key, self.cfg_path)

    def _build_evaluation(self, user: DictConfig, options: DictConfig) -> DictConfig:
        from minigpt4.evaluation.config import EvaluationConfig

        sources = [(self.cfg_path, _section(user, "evaluation")), (OPTIONS_LABEL, _section(options, "evaluation"))]
        merged = _merge_sources(sources, "evaluation", self._origins)
        return validate(EvaluationConfig, merged, "evaluation", self._origins, self.cfg_path)

    # accessors ------------------------------------------------------------------------------------------
    @property
    def run_cfg(self) -> DictConfig:
        return self.config.run

    @property
    def model_cfg(self) -> DictConfig:
        return self.config.model

    @property
    def datasets_cfg(self) -> DictConfig:
        return self.config.datasets

    @property
    def preprocess_cfg(self) -> DictConfig:
        return self.config.preprocess

    @property
    def evaluation_cfg(self) -> DictConfig:
        """The ``evaluation`` section (:class:`minigpt4.evaluation.config.EvaluationConfig`)."""
        return self.config.evaluation

    def to_dict(self) -> dict[str, Any]:
        """A plain, resolved copy: what checkpoints store and ``config.yaml`` holds."""
        return OmegaConf.to_container(self.config, resolve=True)  # type: ignore[return-value]

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(self.config, resolve=True)

    def pretty_print(self) -> None:
        """Log the merged configuration, one section at a time."""
        for section in ("run", "datasets", "model", "preprocess"):
            logger.info("===== %s =====\n%s", section, OmegaConf.to_yaml(self.config[section], resolve=True))


def _check_warmup(run: DictConfig, origins: _Origins, fallback: str) -> None:
    """A warmup (``warmup_lr >= 0``) may not be longer than the run, when the run's length is known."""
    if run.lr_sched is None or run.warmup_lr < 0 or run.iters_per_epoch is None:
        return
    total = run.max_epoch * run.iters_per_epoch
    if run.warmup_steps > total:
        raise ConfigError(
            f"{origins.of('run.warmup_steps', fallback)}: run.warmup_steps: {run.warmup_steps} is more than the "
            f"run's {total} iterations (run.max_epoch {run.max_epoch} x run.iters_per_epoch {run.iters_per_epoch}); "
            "lower it, or set run.warmup_lr=-1 for no warmup"
        )


def _path_problem(kind: str, path: str, key: str) -> str | None:
    """Why ``path`` (the value of ``key``, a :func:`path_field` of ``kind``) is unusable, or None if it exists."""
    from minigpt4.datasets.datasets.webdataset_source import data_search_dirs, expand_shards
    from minigpt4.models.base_model import resolve_model_path

    path = str(path)
    try:
        if kind == "model":
            resolve_model_path(path, key)
        elif kind == "shards":
            expand_shards(path)
        else:
            expanded = os.path.expanduser(path)
            bases = [""] if os.path.isabs(expanded) else data_search_dirs()
            candidates = list(dict.fromkeys(os.path.abspath(os.path.join(b, expanded)) for b in bases))
            if not any(os.path.isdir(c) for c in candidates):
                return f"{key}: folder not found: {path!r} (looked at {', '.join(candidates)})"
    except FileNotFoundError as err:
        message = str(err)
        return message if message.startswith(f"{key}:") else f"{key}: {message}"
    return None


# ----------------------------------------------------------------------------------------------------------
# entry points: one line per user error, the traceback on request
# ----------------------------------------------------------------------------------------------------------

DEBUG_ENV = "MINIGPT4_DEBUG"
DEBUG_FLAG = "--debug"
CONFIG_ERROR_EXIT_CODE = 2
# errors about the user's input whose message says everything (key, file, line): printed without a traceback
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, InputFileError, FileNotFoundError)


def add_config_args(parser: Any, cfg_help: str, example: str) -> None:
    """Add ``--cfg-path`` (help ``cfg_help``), ``--options`` (``example``: dotted ``key=value`` pairs) and
    ``--debug`` to an ``argparse`` parser: the arguments every entry point that reads a config takes."""
    parser.add_argument("--cfg-path", required=True, help=cfg_help)
    parser.add_argument(
        "--options", nargs="+", default=None, help=f"override config values: dotted key=value pairs, e.g. {example}"
    )
    add_debug_argument(parser)


def add_debug_argument(parser: Any) -> None:
    """Add ``--debug`` (show the full traceback of an error) to an ``argparse`` parser."""
    parser.add_argument(
        DEBUG_FLAG,
        action="store_true",
        help=f"show the full traceback of a configuration or input error (or set {DEBUG_ENV}=1)",
    )


def debug_requested(argv: Sequence[str]) -> bool:
    """True with ``--debug`` among the arguments or ``MINIGPT4_DEBUG`` set to anything but "", "0", "false"."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run_entry_point(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None, prog: str = "") -> int:
    """Run ``main(argv)`` for a script's ``__main__``; the process exit code.

    A :data:`USER_ERRORS` error prints ``PROG: error: MESSAGE`` alone on stderr and gives exit code 2 (unless
    :func:`debug_requested`, when it propagates with its traceback). ``main`` returning an int gives that code;
    anything else gives 0.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = main(args)
    except USER_ERRORS as err:
        if debug_requested(args):
            raise
        message = err.args[0] if isinstance(err, FileNotFoundError) and len(err.args) == 1 else str(err)
        name = prog or os.path.basename(sys.argv[0] or "minigpt4")
        sys.stderr.write(f"{name}: error: {message}\n")
        sys.stderr.flush()
        return CONFIG_ERROR_EXIT_CODE
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


class _Args:
    def __init__(self, cfg_path: str, options: list[str]) -> None:
        self.cfg_path = cfg_path
        self.options = options


def node_to_dict(node: DictConfig | ListConfig | Mapping[str, Any]) -> Any:
    """A plain Python copy of a config node (dicts pass through)."""
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node)
