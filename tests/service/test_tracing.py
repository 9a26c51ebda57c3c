"""OpenTelemetry: one ``tts`` span per reply, as Pipecat's own TTS services produce.

Each test runs a real pipeline (``enable_tracing=True`` on the worker, as an
application sets it) around the service and the local server, and reads the
finished spans from OpenTelemetry's in-memory exporter.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pipecat.frames.frames import ErrorFrame
from pipecat.utils.errors import ErrorCategory

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.service.conversation import Conversation, Result, run_conversation
from tests.service.helpers import API_KEY, make_service

#: Audio streams at about real time, so a long reply is still arriving when
#: the caller talks over it.
SLOW = {"chunk_ms": 100, "chunk_interval_ms": 100}

LONG_REPLY = (
    "Let me tell you about our menu. We have seven kinds of pasta tonight. "
    "There is also a fish special with lemon and herbs."
)

TRACING = {"enable_tracing": True}


@pytest.fixture(scope="module")
def provider_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the process's tracer provider (set up once)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def exporter(provider_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    provider_exporter.clear()
    yield provider_exporter
    provider_exporter.clear()


def tts_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """Finished ``tts`` spans, oldest first."""
    spans = [s for s in exporter.get_finished_spans() if s.name == "tts"]
    return sorted(spans, key=lambda s: s.start_time or 0)


def errors_so_far(c: Conversation) -> list[ErrorFrame]:
    """Error frames that came back upstream through the inlet so far."""
    return [e.frame for e in c.inlet.entries if isinstance(e.frame, ErrorFrame)]


def assert_clean(result: Result) -> None:
    assert not result.conversation.timed_out, result.conversation.timed_out
    assert not result.unfinished


async def test_two_replies_give_two_spans_with_pipecats_attributes(
    exporter: InMemorySpanExporter,
):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        service = make_service(
            server, settings=WavesTTSService.Settings(voice="liam", model="lightning_v3.1_pro")
        )
        c = Conversation()
        c.say("first", "Hello there, how are you?")
        c.wait_heard(1, then_quiet_s=0.2, timeout_s=10, label="first reply heard")
        # A reply this short is all in from the server before its first audio
        # plays: its TTFB must still land on its span.
        c.say("second", "Sure.")
        c.wait_heard(2, then_quiet_s=0.2, timeout_s=10, label="second reply heard")
        # Metrics are off: the span's TTFB does not depend on them.
        result = await run_conversation(service, c, worker_options=TRACING)
    assert_clean(result)
    spans = tts_spans(exporter)
    assert len(spans) == 2, [dict(s.attributes or {}) for s in spans]
    turns = {s.context.span_id for s in exporter.get_finished_spans() if s.name == "turn"}
    for span, text in zip(spans, ["Hello there, how are you?", "Sure."], strict=True):
        a = dict(span.attributes or {})
        assert str(a["text"]).strip() == text
        assert a["metrics.character_count"] == len(str(a["text"]))
        assert a["voice_id"] == "liam"
        assert a["gen_ai.request.model"] == "lightning_v3.1_pro"
        assert a["gen_ai.provider.name"] == "waves"
        assert a["gen_ai.operation.name"] == "tts"
        assert a["settings.voice"] == "liam"
        ttfb = a["metrics.ttfb"]
        assert isinstance(ttfb, float) and 0 < ttfb < 10
        assert "tts.interrupted" not in a
        assert span.status.status_code is StatusCode.UNSET
        # Placed as Pipecat places its own: under the turn span.
        assert span.parent is not None and span.parent.span_id in turns


def replies_closed(server: LocalWavesServer) -> int:
    """Replies whose last fragment (``continue: false``) reached the server."""
    return sum(m.get("continue") is False for conn in server.connections for m in conn.received)


async def test_a_barged_in_reply_is_marked_interrupted(exporter: InMemorySpanExporter):
    behaviour = ServerBehaviour(**SLOW)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = make_service(server)
        c = Conversation()
        c.say("long", LONG_REPLY)
        # The caller talks once the whole reply is with the service and its
        # audio plays (and still streams in: the server sends it at real time).
        c.wait(lambda: replies_closed(server) == 1, 10, "long reply all sent")
        c.wait_started(1, timeout_s=10, label="long reply started")
        c.barge_in()
        c.say("next", "Sure, go ahead.")
        c.wait(lambda: replies_closed(server) == 2, 10, "next reply all sent")
        c.wait_heard(
            1, then_quiet_s=0.2, timeout_s=10, label="next reply heard", since_barge_in=True
        )
        result = await run_conversation(service, c, worker_options=TRACING)
    assert_clean(result)
    spans = tts_spans(exporter)
    assert len(spans) == 2, [dict(s.attributes or {}) for s in spans]
    cut, spoken = (dict(s.attributes or {}) for s in spans)
    assert cut["tts.interrupted"] is True
    assert "metrics.ttfb" in cut, "its audio had started"
    assert str(cut["text"]).strip() == LONG_REPLY
    assert "tts.interrupted" not in spoken
    assert str(spoken["text"]).strip() == "Sure, go ahead."


async def test_a_reply_queued_behind_the_playing_one_is_marked_interrupted_too(
    exporter: InMemorySpanExporter,
):
    behaviour = ServerBehaviour(**SLOW)
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour, record=True
    ) as server:
        service = make_service(server)
        c = Conversation()
        c.say("long", LONG_REPLY)
        c.say("queued", "And one more thing.")
        # Both replies are with the service (two spans open), the first plays
        # and the second waits behind it.
        c.wait(lambda: replies_closed(server) == 2, 10, "both replies sent")
        c.wait_started(1, timeout_s=10, label="long reply started")
        c.barge_in()
        # The barge-in itself ends both spans, before the pipeline ends.
        c.wait(lambda: len(tts_spans(exporter)) == 2, 10, "both spans ended")
        result = await run_conversation(service, c, worker_options=TRACING)
    assert_clean(result)
    assert len(c.contexts_heard()) == 1, "the queued reply never played"
    spans = tts_spans(exporter)
    # Both end, each once: a dropped reply that was not playing is no leak.
    assert len(spans) == 2, [dict(s.attributes or {}) for s in spans]
    assert [dict(s.attributes or {}).get("tts.interrupted") for s in spans] == [True, True]
    assert str(dict(spans[1].attributes or {})["text"]).strip() == "And one more thing."


async def test_a_refused_reply_ends_its_span_with_an_error(exporter: InMemorySpanExporter):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        # A voice the server does not have: it refuses the reply.
        service = make_service(server, settings=WavesTTSService.Settings(voice="nobody_here"))
        c = Conversation()
        c.say("refused", "Hello there.", outcome="failed")
        c.wait(lambda: bool(errors_so_far(c)), 10, "error reported")
        result = await run_conversation(service, c, worker_options=TRACING)
    assert not result.unfinished
    assert len(result.errors) == 1, [e.error for e in result.errors]
    spans = tts_spans(exporter)
    assert len(spans) == 1
    span = spans[0]
    a = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert "nobody_here" in (span.status.description or "")
    assert a["error.type"] == ErrorCategory.INVALID_REQUEST.value
    assert a["voice_id"] == "nobody_here"
    assert "tts.interrupted" not in a


async def test_no_spans_when_tracing_is_off(exporter: InMemorySpanExporter):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        service = make_service(server)
        c = Conversation()
        c.say("first", "Hello there.")
        c.say("second", "Sure.")
        c.wait_heard(2, then_quiet_s=0.2, timeout_s=10, label="both replies heard")
        result = await run_conversation(service, c)
    assert_clean(result)
    assert len(c.contexts_heard()) == 2, "the replies were spoken"
    assert tts_spans(exporter) == []


async def test_without_opentelemetry_tracing_is_quietly_off(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
):
    # As if the `tracing` extra were not installed, while the pipeline asks for tracing.
    monkeypatch.setattr("pipecat_waves.service.tracing.trace", None)
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        service = make_service(server)
        c = Conversation()
        c.say("first", "Hello there.")
        c.wait_heard(1, then_quiet_s=0.2, timeout_s=10, label="reply heard")
        result = await run_conversation(service, c, worker_options=TRACING)
    assert_clean(result)
    assert not result.errors
    assert tts_spans(exporter) == []
