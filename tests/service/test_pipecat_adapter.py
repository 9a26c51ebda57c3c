"""What the service needs of Pipecat beyond its public API, pinned, and the range declared.

``pipecat_waves/service/pipecat_adapter.py`` is the one module that touches Pipecat
members that are not public (two of them). If a Pipecat release renames or
reshapes one, these tests fail loudly, and the adapter falls back instead of
breaking the service: the fallbacks are tested here too.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from loguru import logger
from packaging.specifiers import SpecifierSet
from pipecat.services.tts_service import TTSService
from pipecat.utils.text.base_text_aggregator import BaseTextAggregator
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from pipecat_waves.service import pipecat_adapter
from pipecat_waves.service.first_clause import FirstClause, FirstClauseAggregator
from pipecat_waves.service.pipecat_adapter import ReportedFailuresAdapter, install_text_aggregator
from tests.service.helpers import API_KEY, errors, llm_turn, make_service, run
from tests.service.test_streaming import carried, tone_server

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parents[2]
URL = "ws://127.0.0.1:9"  # never connected to: construction only


class Plain(TTSService):
    async def run_tts(self, text: str, context_id: str):
        yield None


def _parameters(method) -> list[str]:
    return list(inspect.signature(method).parameters)


# ------------------------------------------------------- the pinned members


def test_pipecat_keeps_its_sentence_aggregator_in_text_aggregator():
    plain = Plain()
    assert isinstance(getattr(plain, pipecat_adapter.TEXT_AGGREGATOR), SimpleTextAggregator)
    # ...and reads it there on every text frame, not a copy made at construction.
    handle_text = inspect.getsource(TTSService._handle_text)
    assert f"self.{pipecat_adapter.TEXT_AGGREGATOR}.aggregate(" in handle_text


def test_the_service_installs_the_first_clause_aggregator_in_sentence_mode_only():
    assert isinstance(
        WavesTTSService(api_key=API_KEY, base_url=URL)._text_aggregator, FirstClauseAggregator
    )
    off = WavesTTSService(api_key=API_KEY, base_url=URL, first_clause=None)
    assert not isinstance(off._text_aggregator, FirstClauseAggregator)


def test_pipecat_reports_each_ended_context_through_the_audio_outcome_hook():
    hook = getattr(TTSService, pipecat_adapter.AUDIO_OUTCOME_HOOK)
    assert inspect.iscoroutinefunction(hook)
    assert _parameters(hook) == ["self", "context_id", "received_audio"]
    assert f"self.{pipecat_adapter.AUDIO_OUTCOME_HOOK}(" in inspect.getsource(
        TTSService._end_audio_context
    )
    # The service's override is the adapter's, ahead of Pipecat's.
    resolved = getattr(WavesTTSService, pipecat_adapter.AUDIO_OUTCOME_HOOK)
    assert resolved is getattr(ReportedFailuresAdapter, pipecat_adapter.AUDIO_OUTCOME_HOOK)


async def test_a_refused_reply_is_one_error_because_of_the_adapter(monkeypatch):
    async def run_refused_reply() -> list:
        behaviour = ServerBehaviour(error_on_request=1)
        async with LocalWavesServer(
            api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour
        ) as server:
            _, up = await run(make_service(server), llm_turn("Hello there."))
        return errors(up)

    errs = await run_refused_reply()
    assert len(errs) == 1 and "Waves" in errs[0].error
    # Without it, Pipecat reports the same reply a second time as silent.
    monkeypatch.setattr(WavesTTSService, "_claim_reported_failure", lambda self, cid: False)
    errs = await run_refused_reply()
    assert len(errs) == 2 and "no audio" in errs[1].error


def test_the_service_touches_no_other_pipecat_member_that_is_not_public():
    plain = Plain()
    pipecat_names = (
        set(dir(plain)) | set(vars(plain)) | set(vars(SimpleTextAggregator(language="en")))
    )
    # Pipecat's interface for subclasses: every Pipecat service overrides
    # _update_settings ("concrete services should override this method"),
    # keeps its Settings in _settings and fires events with _call_event_handler.
    subclass_interface = {"_update_settings", "_settings", "_call_event_handler"}
    # Every module of the services but the adapter itself, whatever they are split into.
    modules = [
        path
        for path in sorted((ROOT / "pipecat_waves" / "service").glob("*.py"))
        if path.name != "pipecat_adapter.py"
    ]
    assert {"websocket.py", "http.py", "tracing.py"} <= {path.name for path in modules}
    for path in modules:
        used = set(re.findall(r"\.(_[a-z][a-z0-9_]*)\b", path.read_text())) & pipecat_names
        assert used <= subclass_interface, (path.name, sorted(used - subclass_interface))
    for name in subclass_interface:
        assert hasattr(plain, name), name


def test_the_interruption_hook_is_public_and_takes_the_context_id():
    hook = TTSService.on_audio_context_interrupted
    assert inspect.iscoroutinefunction(hook)
    assert _parameters(hook) == ["self", "context_id"]
    assert WavesTTSService.on_audio_context_interrupted is not hook


# ------------------------------------------------------------- the fallbacks


def _warnings() -> tuple[list[str], int]:
    lines: list[str] = []
    return lines, logger.add(lines.append, level="WARNING", format="{message}")


def test_a_pipecat_without_the_aggregator_member_gets_whole_sentences_and_one_warning():
    lines, sink = _warnings()
    try:

        class Elsewhere:
            pass

        target = Elsewhere()
        assert not install_text_aggregator(target, lambda old: old)  # type: ignore[arg-type]
        assert not hasattr(target, pipecat_adapter.TEXT_AGGREGATOR)
        odd = Plain()
        setattr(odd, pipecat_adapter.TEXT_AGGREGATOR, "not an aggregator")
        assert not install_text_aggregator(odd, lambda old: old)
        assert getattr(odd, pipecat_adapter.TEXT_AGGREGATOR) == "not an aggregator"
    finally:
        logger.remove(sink)
    assert len(lines) == 2 and all("whole sentences" in line for line in lines)


async def test_the_service_speaks_whole_sentences_if_the_aggregator_member_moves(monkeypatch):
    monkeypatch.setattr(pipecat_adapter, "TEXT_AGGREGATOR", "_moved_in_a_later_pipecat")
    lines, sink = _warnings()
    try:
        async with tone_server() as server:
            service = make_service(server)
            assert not isinstance(service._text_aggregator, FirstClauseAggregator)
            await run(service, llm_turn("Hello there, how are you today? Fine."))
    finally:
        logger.remove(sink)
    assert carried(server)[0]["text"] == "Hello there, how are you today? "
    assert sum("whole sentences" in line for line in lines) == 1


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []


class _Reshaped(_Recorder):
    """A later Pipecat whose hook took other arguments."""

    async def _record_context_audio_outcome(self, context_id, received_audio, played_s):
        self.calls.append((context_id, received_audio, played_s))


class _KeywordsOnly(_Recorder):
    async def _record_context_audio_outcome(self, *, context_id, received_audio):
        self.calls.append((context_id, received_audio))


class _Gone(_Recorder):
    """A later Pipecat without the hook."""


def _adapted(base: type, failed: set[str]):
    class Adapted(ReportedFailuresAdapter, base):  # type: ignore[misc, valid-type]
        def _claim_reported_failure(self, context_id: str) -> bool:
            return context_id in failed

    return Adapted()


async def test_the_outcome_hook_passes_any_arguments_through_and_skips_only_failed_replies():
    reshaped = _adapted(_Reshaped, {"failed"})
    await reshaped._record_context_audio_outcome("ok", False, 1.5)
    await reshaped._record_context_audio_outcome("failed", False, 0.0)
    assert reshaped.calls == [("ok", False, 1.5)]
    keywords = _adapted(_KeywordsOnly, {"failed"})
    await keywords._record_context_audio_outcome(context_id="ok", received_audio=True)
    await keywords._record_context_audio_outcome(context_id="failed", received_audio=False)
    assert keywords.calls == [("ok", True)]
    gone = _adapted(_Gone, set())
    await gone._record_context_audio_outcome("ok", True)  # nothing to call, nothing raised
    assert gone.calls == []


def test_aggregator_built_from_pipecats_carries_its_language():
    plain = Plain()
    plain._text_aggregator.set_language("de")
    made: list[BaseTextAggregator] = []

    def make(old: BaseTextAggregator) -> BaseTextAggregator:
        made.append(FirstClauseAggregator(FirstClause(), language=old.language))
        return made[0]

    assert install_text_aggregator(plain, make)
    assert plain._text_aggregator is made[0]
    assert plain._text_aggregator.language == "de"


# -------------------------------------------------------------- the range


def _declared() -> SpecifierSet:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [spec] = [d for d in project["dependencies"] if d.startswith("pipecat-ai")]
    return SpecifierSet(spec.removeprefix("pipecat-ai"))


def test_the_installed_pipecat_is_inside_the_declared_range():
    assert version("pipecat-ai") in _declared()


@pytest.mark.parametrize(
    ("release", "supported"),
    [
        ("1.12.0", False),
        ("1.13.0", True),
        ("1.14.0", True),
        ("1.15.0", True),
        ("1.99.0", True),
        ("2.0.0", False),
    ],
)
def test_the_range_is_every_release_from_1_13_to_the_next_major(release, supported):
    assert (release in _declared()) is supported


def test_ci_runs_the_whole_suite_again_on_the_oldest_pipecat_of_the_range():
    script = (ROOT / ".ci" / "run").read_text()
    finder = script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", finder], cwd=ROOT, capture_output=True, text=True, check=True
    )
    oldest = done.stdout.strip()
    assert oldest == "1.13" and f"{oldest}.0" in _declared()
    assert "1.12.99" not in _declared()
    assert '"pipecat-ai==${oldest}"' in script
    assert script.rstrip().endswith(".venv-oldest-pipecat/bin/python -m pytest")
