"""Packaging: environment.yml, pyproject.toml and the installed environment agree; what minigpt4 imports is what
it declares; CI follows the README."""

import ast
import os
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from minigpt4.models.mini_gpt4 import LOW_RESOURCE_EXTRA, LOW_RESOURCE_PACKAGES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# what "the package" is for the import checks: the library and the two entry scripts
SOURCES = [*sorted(Path(ROOT, "minigpt4").rglob("*.py")), Path(ROOT, "train.py"), Path(ROOT, "demo.py")]
# declared dependencies that minigpt4 needs at run time without importing them itself
RUNTIME_ONLY = {
    "protobuf": "transformers needs it to read a sentencepiece tokenizer.model (a Vicuna / LLaMA folder without "
    "tokenizer.json fails to load without it)",
    "tensorboard": "torch.utils.tensorboard, which the runner imports for run.tensorboard, is backed by it",
}


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _environment() -> dict:
    with open(os.path.join(ROOT, "environment.yml")) as f:
        return yaml.safe_load(f)


def _declared() -> list[str]:
    project = _pyproject()["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


def _conda_parts() -> tuple[list[str], list[str]]:
    deps = _environment()["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    return conda, pip


def test_environment_pip_list_matches_pyproject():
    _, pip = _conda_parts()
    assert "-e ." in pip  # the package itself
    requirements = [r for r in pip if r != "-e ."]
    assert sorted(map(str, map(Requirement, requirements))) == sorted(map(str, map(Requirement, _declared())))


def test_dev_extra():
    dev = {Requirement(r).name for r in _pyproject()["project"]["optional-dependencies"]["dev"]}
    assert dev == {"pytest", "ruff", "playwright"}


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _optional_extras() -> dict[str, set[str]]:
    """The extras other than dev (their packages are not installed by default)."""
    extras = _pyproject()["project"]["optional-dependencies"]
    return {name: _names(reqs) for name, reqs in extras.items() if name != "dev"}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(top-level module, line, lazy)`` of each absolute import in ``path``; lazy: inside a function."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name.split(".")[0], child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module.split(".")[0], child.lineno, lazy))
            visit(child, lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def _third_party_imports() -> list[tuple[set[str], str, bool]]:
    """``(distributions providing the module, "file:line", lazy)`` of each third-party import of the package."""
    providers = metadata.packages_distributions()
    optional = set().union(*_optional_extras().values())  # may be uninstalled: known by their own name
    found = []
    unknown = []
    for path in SOURCES:
        for module, line, lazy in _imports(path):
            if module in sys.stdlib_module_names or module in ("minigpt4", "__future__"):
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            if not dists and canonicalize_name(module) in optional:
                dists = {canonicalize_name(module)}
            if not dists:
                unknown.append(f"{module} ({where})")
            found.append((dists, where, lazy))
    assert not unknown, f"imports that no installed distribution provides: {', '.join(unknown)}"
    return found


def _imported_distributions() -> set[str]:
    return set().union(*(dists for dists, _, _ in _third_party_imports()))


def test_the_import_scan_sees_the_package():
    imports = _third_party_imports()
    assert {"torch", "transformers", "timm", "braceexpand", "pillow", "pyyaml"} <= _imported_distributions()
    assert any(lazy for dists, _, lazy in imports if "peft" in dists)  # LoRA imports peft inside a method


def test_every_import_is_declared():
    declared = _names(_pyproject()["project"]["dependencies"])
    optional = set().union(*_optional_extras().values())
    for dists, where, lazy in _third_party_imports():
        # a top-level name may come from several distributions (namespace packages): one declared is enough
        if dists & declared:
            continue
        assert dists & optional, f"{where} imports {sorted(dists)}, which pyproject.toml does not declare"
        assert lazy, f"{where} imports the optional {sorted(dists)} at module level: import it where it is used"


def test_every_declared_dependency_is_imported_or_runtime_only():
    declared = _names(_pyproject()["project"]["dependencies"])
    imported = _imported_distributions()
    assert set(RUNTIME_ONLY) <= declared, f"RUNTIME_ONLY lists undeclared {sorted(set(RUNTIME_ONLY) - declared)}"
    unused = sorted(declared - imported - set(RUNTIME_ONLY))
    assert not unused, f"declared in pyproject.toml but never imported by minigpt4: {unused}"
    stale = sorted(set(RUNTIME_ONLY) & imported)
    assert not stale, f"imported now, so remove from RUNTIME_ONLY: {stale}"


def test_8bit_extra_is_what_low_resource_checks():
    extras = _optional_extras()
    assert LOW_RESOURCE_EXTRA in extras
    assert extras[LOW_RESOURCE_EXTRA] == set(LOW_RESOURCE_PACKAGES) == {"bitsandbytes", "accelerate"}
    declared = _names(_pyproject()["project"]["dependencies"])
    assert not declared & extras[LOW_RESOURCE_EXTRA], "the 8-bit packages are not default dependencies"


def test_python_version():
    conda, _ = _conda_parts()
    pythons = [d for d in conda if d.startswith("python")]
    assert pythons == ["python=3.11"]
    assert "pip" in conda
    assert Version("3.11") in SpecifierSet(_pyproject()["project"]["requires-python"])


def test_installed_versions_satisfy_ranges():
    for text in _declared():
        req = Requirement(text)
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} is declared but not installed")
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} not in {req.specifier}"


def test_ci_script_runs_the_readme_commands():
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert os.access(os.path.join(ROOT, ".ci", "run"), os.X_OK)
    assert "set -euo pipefail" in ci
    install = 'pip install -e ".[dev,curate]"'
    for command in (install, "ruff check .", "ruff format --check .", "python -m pytest -q tests"):
        assert command in ci
    for command in (install, "python -m pytest -q tests"):
        assert command in readme
