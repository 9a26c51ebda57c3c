"""The private Pipecat members the service relies on, pinned.

``WavesTTSService`` overrides, reads or replaces four members Pipecat does not make
public (see the comment above ``_handle_interruption`` in ``tts.py``). If a
Pipecat release renames or reshapes one, these tests fail loudly instead of
the service silently losing barge-in or double-reporting errors.
"""

from __future__ import annotations

import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.specifiers import SpecifierSet
from pipecat.services.tts_service import TTSContext, TTSService
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

from pipecat_waves import WavesTTSService
from pipecat_waves.first_clause import FirstClauseAggregator

ROOT = Path(__file__).resolve().parents[2]


def _parameters(method) -> list[str]:
    return list(inspect.signature(method).parameters)


def test_handle_interruption_is_an_async_hook_taking_frame_and_direction():
    method = TTSService._handle_interruption
    assert inspect.iscoroutinefunction(method)
    assert _parameters(method) == ["self", "frame", "direction"]
    assert WavesTTSService._handle_interruption is not TTSService._handle_interruption


def test_record_context_audio_outcome_takes_context_id_and_received_audio():
    method = TTSService._record_context_audio_outcome
    assert inspect.iscoroutinefunction(method)
    assert _parameters(method) == ["self", "context_id", "received_audio"]


def test_tts_contexts_maps_context_ids_to_contexts_with_an_interruptible_flag():
    service = WavesTTSService(api_key="sk-contract-check", base_url="ws://127.0.0.1:9")
    assert service._tts_contexts == {}
    assert "interruptible" in {f.name for f in TTSContext.__dataclass_fields__.values()}


def test_text_aggregator_is_the_simple_sentence_aggregator_the_service_replaces():
    class Plain(TTSService):
        async def run_tts(self, text: str, context_id: str):
            yield None

    plain = Plain()
    assert isinstance(plain._text_aggregator, SimpleTextAggregator)
    # Pipecat reads it on every text frame through these methods.
    for name in ("aggregate", "flush", "handle_interruption", "reset", "set_language"):
        assert callable(getattr(plain._text_aggregator, name))
    service = WavesTTSService(api_key="sk-contract-check", base_url="ws://127.0.0.1:9")
    assert isinstance(service._text_aggregator, FirstClauseAggregator)


def test_the_installed_pipecat_is_inside_the_declared_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [spec] = [d for d in project["dependencies"] if d.startswith("pipecat-ai")]
    declared = SpecifierSet(spec.removeprefix("pipecat-ai"))
    assert version("pipecat-ai") in declared
    # The range is the tested minor release only: a new one must be tested first.
    assert not SpecifierSet(str(declared)).contains("1.15.0")
