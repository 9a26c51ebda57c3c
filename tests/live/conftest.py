"""Live contract tests: the real Waves API, only when asked for and given a key.

They run with ``pytest -m live`` when ``WAVES_API_KEY`` (or
``SMALLEST_API_KEY``) is set; otherwise each is collected and skipped with the
reason shown (``-rs``). A plain ``pytest`` run never spends an account's
characters, even with a key in the environment.
"""

from __future__ import annotations

import os

import pytest

from pipecat_waves.cli.commands import API_KEY_ENVS


def live_key() -> str | None:
    """The key for the live tests, from the environment."""
    for name in API_KEY_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = "live" in (config.getoption("-m") or "")
    key = live_key()
    for item in items:
        if item.get_closest_marker("live") is None:
            continue
        if key is None:
            envs = " or ".join(API_KEY_ENVS)
            item.add_marker(pytest.mark.skip(reason=f"live test: set {envs} to run it"))
        elif not selected:
            item.add_marker(pytest.mark.skip(reason="live test: run it with -m live"))


@pytest.fixture
def api_key() -> str:
    key = live_key()
    assert key is not None  # the collection hook skipped the test otherwise
    return key
