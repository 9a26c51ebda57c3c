"""The README's code: every Python block compiles (the docs' too), and the complete script runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pipecat_waves
from pipecat_waves.server import LocalWavesServer, ToneBackend

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
KEY = "readme-key"


def _python_blocks(page: Path = README) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def _compile_fragments(blocks: list[str], name: str) -> None:
    for block in blocks:
        # Fragments may await, as they would inside a coroutine.
        compile(block, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_every_python_block_compiles():
    blocks = _python_blocks()
    assert len(blocks) >= 3
    _compile_fragments(blocks, "README.md")


def test_every_python_block_in_the_docs_compiles():
    blocks = {page.name: _python_blocks(page) for page in DOCS}
    assert sum(map(len, blocks.values())) >= 2  # server_traits and LocalWavesServer
    for name, found in blocks.items():
        _compile_fragments(found, f"docs/{name}")


async def test_the_complete_script_runs_as_written(monkeypatch, capsys):
    script = next(b for b in _python_blocks() if "asyncio.run(main())" in b)
    async with LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as server:
        # The script as written, pointed at the local server instead of Smallest.ai.
        class LocalWaves(pipecat_waves.WavesTTSService):
            def __init__(self, **kwargs):
                super().__init__(base_url=server.ws_base_url, **kwargs)

        monkeypatch.setattr(pipecat_waves, "WavesTTSService", LocalWaves, raising=False)
        monkeypatch.setenv("WAVES_API_KEY", KEY)
        namespace: dict = {"__name__": "readme"}
        exec(compile(script.replace("asyncio.run(main())", ""), "README.md", "exec"), namespace)
        await namespace["main"]()
        asked = {m["sample_rate"] for c in server.connections for m in c.received if "text" in m}
    printed = capsys.readouterr().out
    seconds = float(printed.split(" s of speech")[0].split()[-1])
    assert seconds > 1.0
    assert asked == {44100}  # 48 kHz pipeline: Waves asked for 44.1 kHz, resampled


@pytest.mark.parametrize("command", ["pip install ./pipecat-waves", "pip wheel --no-deps"])
def test_install_lines_for_your_own_project_are_there(command):
    assert command in README.read_text()
