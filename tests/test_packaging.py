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


def test_the_public_names_come_from_the_package_root():
    homes = {
        "WavesTTSService": "pipecat_waves.service.websocket",
        "WavesTTSSettings": "pipecat_waves.service.settings",
        "WavesHttpTTSService": "pipecat_waves.service.http",
        "FirstClause": "pipecat_waves.service.first_clause",
        "ServerTraits": "pipecat_waves.protocol.traits",
        "language_to_waves_language": "pipecat_waves.service.language",
    }
    assert set(pipecat_waves.__all__) == set(homes)
    for name, home in homes.items():
        assert getattr(pipecat_waves, name).__module__ == home, name
    assert _project()["project"]["scripts"]["pipecat-waves"] == "pipecat_waves.__main__:main"


def test_the_package_root_holds_only_what_every_part_shares():
    # The rest lives in a folder per part: protocol, service, server, cli, probe.
    modules = {path.name for path in (ROOT / "pipecat_waves").glob("*.py")}
    assert modules == {"__init__.py", "__main__.py", "credentials.py", "errors.py", "log.py"}


#: Longest module allowed: past it, a module holds more than one idea to split out.
MAX_MODULE_LINES = 650


def test_no_module_is_longer_than_the_limit():
    modules = sorted((ROOT / "pipecat_waves").rglob("*.py"))
    assert len(modules) > 40  # the whole package was found
    lengths = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in modules}
    too_long = {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES}
    assert not too_long, too_long
