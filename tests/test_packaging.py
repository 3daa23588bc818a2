"""Packaging: environment.yml, pyproject.toml and the installed environment agree; CI follows the README."""

import os
from importlib import metadata

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    for command in ('pip install -e ".[dev]"', "ruff check .", "ruff format --check .", "python -m pytest -q tests"):
        assert command in ci
    for command in ('pip install -e ".[dev]"', "python -m pytest -q tests"):
        assert command in readme
