"""What the package declares about itself: typed, supported Pythons, status."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path

import pipecat_waves

ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_is_marked_typed_and_ships_the_marker():
    assert files("pipecat_waves").joinpath("py.typed").is_file()
    package_data = _project()["tool"]["setuptools"]["package-data"]["pipecat_waves"]
    assert "py.typed" in package_data


def test_classifiers_name_status_python_versions_and_typing():
    project = _project()["project"]
    classifiers = project["classifiers"]
    assert any(c.startswith("Development Status :: ") for c in classifiers)
    assert "Typing :: Typed" in classifiers
    # Every minor version named is one the package accepts (>= 3.11).
    minors = [
        c.rsplit(".", 1)[1]
        for c in classifiers
        if c.startswith("Programming Language :: Python :: 3.")
    ]
    assert minors and all(int(m) >= 11 for m in minors)
    assert project["requires-python"] == ">=3.11"


def test_version_is_one_number_everywhere():
    assert _project()["project"]["version"] == pipecat_waves.__version__
