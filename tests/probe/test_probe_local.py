"""The probe is honest: against the local server it reports exactly the switches set.

Each case sets a pairwise selection of the server's switches (every value of
each switch appears, most pairs of them too) and checks that the probe's
findings name those switches and values; a last test probes, serves what
was probed, and probes again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from pipecat_waves.probe import (
    FindingKey,
    IdleFacts,
    OutcomeFacts,
    PingFacts,
    ProbeConfig,
    ProbeReport,
    probe_characters,
    run_probe,
)
from pipecat_waves.probe.runner import LONG_SENTENCE, PER_FRAGMENT, probe_texts
from pipecat_waves.protocol.traits import ServerTraits
from pipecat_waves.server import LocalWavesServer, ServerBehaviour, ToneBackend

KEY = "probe-test-key"

#: Keeps every wait of the probe short on loopback.
FAST = {"settle_s": 0.2, "pause_s": 0.6, "idle_wait_s": 2.5, "quiet_close_s": 0.3}

#: Paced audio, so a cancel finds a segment still streaming (not a probed switch).
PACED = {"chunk_interval_ms": 5}

CASES: dict[str, dict[str, Any]] = {
    "strictest defaults": {},
    "echo, stop on cancel, no pong, nested, context times, short idle": {
        "echo_external_request_id": True,
        "cancel_stops_inflight": True,
        "complete_delay_ms": 0,
        "ping_supported": False,
        "error_shape": "nested",
        "word_time_reference": "context",
        "auth_failure": "close_after_upgrade",
        "idle_timeout_s": 1,
        "max_chunk_chars": 40,
        "buffer_delay_override_ms": 200,
        "chunk_ms": 100,
        "pronunciation_dicts_on_socket": "apply",
    },
    "held completes ignored beside a context, coalesced, both shapes, merged sentences": {
        "complete_delay_ms": 600,
        "complete_backoff_with_context": "ignore",
        "coalesce_complete": True,
        "error_shape": "both",
        "min_sentence_chars": 200,
        "cancel_stops_inflight": True,
        "echo_external_request_id": True,
        "pronunciation_dicts_on_socket": "ignore",
    },
    "backoff beside a context refused, socket closed after a one-shot": {
        "complete_delay_ms": 600,
        "complete_backoff_with_context": "refuse",
        "close_after_one_shot_complete": True,
        "word_time_reference": "context",
        "error_shape": "nested",
        "max_chunk_chars": 60,
        "idle_timeout_s": 2,
    },
}


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[LocalWavesServer] = []

    async def start(behaviour: ServerBehaviour) -> LocalWavesServer:
        server = LocalWavesServer(KEY, backend=ToneBackend(), behaviour=behaviour)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def probe(server: LocalWavesServer) -> ProbeReport:
    return await run_probe(ProbeConfig(server.ws_base_url, KEY, **FAST))


def expected_switches(b: ServerBehaviour) -> dict[str, Any]:
    """What the probe can tell about ``b``, as the switches it should report."""
    held = b.complete_delay_ms > 0
    switches: dict[str, Any] = {
        "auth_failure": b.auth_failure,
        "ping_supported": b.ping_supported,
        "echo_external_request_id": b.echo_external_request_id,
        "complete_delay_ms": b.complete_delay_ms,
        "close_after_one_shot_complete": b.close_after_one_shot_complete,
        "cancel_stops_inflight": b.cancel_stops_inflight,
        "error_shape": b.error_shape,
        "word_time_reference": b.word_time_reference,
        "chunk_ms": b.chunk_ms,
        "buffer_delay_override_ms": b.buffer_delay_override_ms,
        "pronunciation_dicts_on_socket": b.pronunciation_dicts_on_socket,
    }
    if held:
        # A complete sent at once shows neither coalescing nor a backoff taking effect.
        switches["complete_backoff_with_context"] = b.complete_backoff_with_context
    if held and not b.close_after_one_shot_complete:
        # Nor does a socket closed after the first of two one-shots.
        switches["coalesce_complete"] = b.coalesce_complete
    if b.idle_timeout_s <= FAST["idle_wait_s"]:
        switches["idle_timeout_s"] = b.idle_timeout_s
    return switches


@pytest.mark.parametrize("switches", CASES.values(), ids=list(CASES))
async def test_probe_reports_the_switches_set(serve: Any, switches: dict[str, Any]) -> None:
    behaviour = ServerBehaviour(**{**PACED, **switches})
    report = await probe(await serve(behaviour))

    found = report.switches()
    expected = expected_switches(behaviour)
    assert {k: found.get(k) for k in expected} == expected
    # Unobservable switches are not guessed.
    if behaviour.complete_delay_ms == 0 or behaviour.close_after_one_shot_complete:
        assert "coalesce_complete" not in found
    if behaviour.complete_delay_ms == 0:
        assert "complete_backoff_with_context" not in found
    if behaviour.idle_timeout_s > FAST["idle_wait_s"]:
        assert "idle_timeout_s" not in found
    assert_cuts(report, behaviour)
    # What the service is handed from the report (WavesTTSService(server_traits=...)).
    traits = ServerTraits.from_probe(report)
    assert traits.answers_pings is behaviour.ping_supported
    assert traits.complete_backoff_with_context == expected.get("complete_backoff_with_context")
    # The local server honours ?timeout=; a 1 s default hides that.
    assert traits.honours_timeout_query is (None if behaviour.idle_timeout_s < 1.5 else True)
    assert traits.idle_timeout_s == expected.get("idle_timeout_s")
    assert traits.pronunciation_dicts_on_socket == behaviour.pronunciation_dicts_on_socket
    assert_structured(report, behaviour)
    if not switches:
        assert_strictest_table(report)


def assert_structured(report: ProbeReport, behaviour: ServerBehaviour) -> None:
    """Every point has its key; the typed facts say what the local server was set to do."""
    assert all(finding.key is not None for finding in report.findings)
    by_key = {finding.key: finding.facts for finding in report.findings}
    ping = by_key[FindingKey.PING]
    assert isinstance(ping, PingFacts)
    assert ping.answer == ("pong" if behaviour.ping_supported else "error")
    assert (ping.pong_after_ms is not None) is behaviour.ping_supported
    query = by_key[FindingKey.IDLE_QUERY]
    assert isinstance(query, IdleFacts) and query.asked_timeout == "1"
    assert query.closed_after_ms is not None, "the local server closes a socket idle for 1 s"
    default = by_key[FindingKey.IDLE_DEFAULT]
    assert isinstance(default, IdleFacts) and default.asked_timeout is None
    if behaviour.idle_timeout_s <= FAST["idle_wait_s"]:
        assert default.closed_after_s == behaviour.idle_timeout_s
    dicts = by_key[FindingKey.DICTS_ON_SOCKET]
    assert isinstance(dicts, OutcomeFacts)
    assert dicts.outcome == behaviour.pronunciation_dicts_on_socket
    # Read back from the JSON, the same findings, facts included.
    assert ProbeReport.from_json(report.to_json()).findings == report.findings


def assert_cuts(report: ProbeReport, behaviour: ServerBehaviour) -> None:
    """Segments reported for the long sentence and the one-per-fragment sentences."""
    rows = dict(report.observed())
    split = len(LONG_SENTENCE) > behaviour.max_chunk_chars
    assert (rows["one long sentence"] != "1 segment(s)") is split
    # Every cut the probe reports fits within the server's limit.
    assert report.switches()["max_chunk_chars"] <= behaviour.max_chunk_chars or not split
    merged = min(len(t.strip()) for t in PER_FRAGMENT) < behaviour.min_sentence_chars
    if not split:
        per = "1 segment(s)" if merged else f"{len(PER_FRAGMENT)} segment(s)"
        assert rows["one sentence per fragment"] == per


def assert_strictest_table(report: ProbeReport) -> None:
    rows = dict(report.observed())
    assert rows["request_id echo (one-shot)"] == "not echoed"
    assert rows["request_id echo (continuation)"] == "not echoed"
    assert rows["complete without complete_backoff_ms"] == "held back about 4 s"
    assert rows["complete_backoff_ms: 0 with context_id"] == "honoured"
    assert rows["cancel_request with audio in flight"] == "audio plays out"
    assert rows["close with nothing buffered"] == "no reply"
    assert rows["wrong key refused"] == "before the upgrade (HTTP 401)"
    assert rows["?timeout=0 (below the range)"] == "closed after 1 s"
    assert rows["idle timeout with ?timeout=1"] == "closed after 1 s"
    assert rows["pronunciation_dicts on the live socket"] == "refused"
    assert report.characters == probe_characters() == sum(map(len, probe_texts()))
    assert report.characters < 2000
    assert ProbeReport.from_json(report.to_json()).observed() == report.observed()


async def test_probe_then_serve_like_then_probe_gives_the_same_table(serve: Any) -> None:
    case = CASES["echo, stop on cancel, no pong, nested, context times, short idle"]
    first = await probe(await serve(ServerBehaviour(**{**PACED, **case})))

    like = ServerBehaviour.from_probe(first.to_json())
    second = await probe(await serve(replace(like, **PACED)))

    assert second.observed() == first.observed()


def test_from_probe_refuses_what_is_not_a_report() -> None:
    with pytest.raises(ValueError, match="not a probe report"):
        ServerBehaviour.from_probe({"hello": 1})
    bad = {"findings": [{"point": "p", "observed": "o", "switches": {"ping_supported": "yes"}}]}
    with pytest.raises(ValueError, match="ping_supported"):
        ServerBehaviour.from_probe(bad)


def test_from_probe_keeps_defaults_for_what_was_not_seen() -> None:
    report = {
        "findings": [{"point": "p", "observed": "o", "switches": {"coalesce_complete": True}}]
    }
    behaviour = ServerBehaviour.from_probe(report)
    assert behaviour == replace(ServerBehaviour(), coalesce_complete=True)
