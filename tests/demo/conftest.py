"""Shared helpers of the demo, CLI and example tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from pipecat_waves.cli.commands import API_KEY_ENVS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (their names start with digits)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key in the environment: the commands must fall back to the local server."""
    for name in API_KEY_ENVS:
        monkeypatch.delenv(name, raising=False)
