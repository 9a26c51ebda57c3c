"""OpenTelemetry over HTTP: one ``tts`` span per reply, as the socket service gives."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pipecat.utils.errors import ErrorCategory

from pipecat_waves import WavesHttpTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.backends import ToneBackend
from tests.http.helpers import make_http_service
from tests.service.conversation import Conversation, run_conversation
from tests.service.helpers import API_KEY
from tests.service.test_tracing import (  # noqa: F401 - fixtures, used by name
    TRACING,
    assert_clean,
    errors_so_far,
    exporter,
    provider_exporter,
    tts_spans,
)

LONG_REPLY = (
    "Let me tell you about our menu. We have seven kinds of pasta tonight. "
    "There is also a fish special with lemon and herbs."
)


async def test_two_replies_give_two_spans_with_pipecats_attributes(
    exporter: InMemorySpanExporter,  # noqa: F811
):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        service = make_http_service(
            server,
            settings=WavesHttpTTSService.Settings(voice="liam", model="lightning_v3.1_pro"),
        )
        c = Conversation()
        c.say("first", "Hello there, how are you?")
        c.wait_heard(1, then_quiet_s=0.2, timeout_s=10, label="first reply heard")
        c.say("second", "Sure. It is open.")
        c.wait_heard(2, then_quiet_s=0.2, timeout_s=10, label="second reply heard")
        result = await run_conversation(service, c, worker_options=TRACING)
    assert_clean(result)
    spans = tts_spans(exporter)
    assert len(spans) == 2, [dict(s.attributes or {}) for s in spans]
    turns = {s.context.span_id for s in exporter.get_finished_spans() if s.name == "turn"}
    for span, text in zip(spans, ["Hello there, how are you?", "Sure. It is open."], strict=True):
        a = dict(span.attributes or {})
        # One span per reply, whatever the number of requests (sentences) in it.
        assert " ".join(str(a["text"]).split()) == text
        assert a["metrics.character_count"] == len(str(a["text"]))
        assert a["voice_id"] == "liam"
        assert a["gen_ai.request.model"] == "lightning_v3.1_pro"
        assert a["gen_ai.operation.name"] == "tts"
        ttfb = a["metrics.ttfb"]
        assert isinstance(ttfb, float) and 0 < ttfb < 10
        assert "tts.interrupted" not in a
        assert span.status.status_code is StatusCode.UNSET
        assert span.parent is not None and span.parent.span_id in turns


async def test_a_barged_in_reply_is_marked_interrupted(
    exporter: InMemorySpanExporter,  # noqa: F811
):
    behaviour = ServerBehaviour(chunk_interval_ms=20)
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour) as s:
        service = make_http_service(s)
        # The whole reply is with the service before the caller talks over it.
        c = Conversation(token_gap_s=0)
        c.say("long", LONG_REPLY)
        c.wait_started(1, timeout_s=10, label="long reply started")
        c.barge_in()
        c.say("next", "Sure, go ahead.")
        c.wait_heard(
            1, then_quiet_s=0.2, timeout_s=10, label="next reply heard", since_barge_in=True
        )
        result = await run_conversation(service, c, worker_options=TRACING)
    assert_clean(result)
    spans = tts_spans(exporter)
    assert len(spans) == 2, [
        (dict(s.attributes or {}).get("text"), dict(s.attributes or {}).get("tts.interrupted"))
        for s in spans
    ]
    cut, spoken = (dict(s.attributes or {}) for s in spans)
    assert cut["tts.interrupted"] is True
    assert "metrics.ttfb" in cut, "its audio had started"
    assert "tts.interrupted" not in spoken
    assert str(spoken["text"]).strip() == "Sure, go ahead."


async def test_a_refused_reply_ends_its_span_with_an_error(
    exporter: InMemorySpanExporter,  # noqa: F811
):
    async with LocalWavesServer(api_key=API_KEY, backend=ToneBackend()) as server:
        service = make_http_service(
            server, settings=WavesHttpTTSService.Settings(voice="nobody_here")
        )
        c = Conversation()
        c.say("refused", "Hello there.", outcome="failed")
        c.wait(lambda: bool(errors_so_far(c)), 10, "error reported")
        result = await run_conversation(service, c, worker_options=TRACING)
    assert not result.unfinished
    assert len(result.errors) == 1, [e.error for e in result.errors]
    (span,) = tts_spans(exporter)
    a = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert "Invalid Voice ID" in (span.status.description or "")
    assert a["error.type"] == ErrorCategory.INVALID_REQUEST.value
