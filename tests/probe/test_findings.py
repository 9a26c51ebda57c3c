"""The probe's reading of what it saw, on hand-made exchanges (pure logic)."""

from __future__ import annotations

import pytest

from pipecat_waves.probe import findings as f
from pipecat_waves.protocol import responses as rs

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

RATE = 16000


def chunk(rid: str, size: int = 3200, echo: str | None = None) -> rs.AudioChunk:
    return rs.AudioChunk(rs.Envelope(request_id=rid, external_request_id=echo), b"\0" * size)


def complete(rid: str, echo: str | None = None) -> rs.SegmentComplete:
    return rs.SegmentComplete(rs.Envelope(request_id=rid, external_request_id=echo))


def test_a_wrong_key_that_nobody_refuses_is_reported_as_such() -> None:
    stayed_open = f.Exchange()
    assert f.auth_finding(None, stayed_open).observed == "not refused"
    assert f.auth_finding(None, stayed_open).switches == {}
    closed = f.Exchange(closed_at=0.01, close_code=1008)
    assert f.auth_finding(None, closed).switches == {"auth_failure": "close_after_upgrade"}
    assert f.auth_finding(401, None).switches == {"auth_failure": "http_401"}


def test_one_complete_for_two_held_back_replies_is_coalescing() -> None:
    exchange = f.Exchange(
        frames=[(0.0, chunk("a")), (0.01, chunk("b")), (1.02, complete("b"))],
    )
    rows = {x.point: x for x in f.one_shot_findings(exchange, RATE, ("one", "two"))}
    keys = [x.key for x in f.one_shot_findings(exchange, RATE, ("one", "two"))]
    assert keys == [
        f.FindingKey.ONE_SHOT_ECHO,
        f.FindingKey.COMPLETE_DELAY,
        f.FindingKey.SOCKET_AFTER_ONE_SHOT,
        f.FindingKey.COALESCED,
    ]
    assert rows["complete without complete_backoff_ms"].switches == {"complete_delay_ms": 1000}
    assert rows["completes coalesced"].switches == {"coalesce_complete": True}
    assert rows["request_id echo (one-shot)"].observed == "not echoed"


def test_a_socket_closed_after_the_first_complete_hides_coalescing() -> None:
    exchange = f.Exchange(
        frames=[(0.0, chunk("a", echo="one")), (0.01, chunk("b")), (0.6, complete("a"))],
        closed_at=0.61,
        close_code=1000,
    )
    rows = {x.point: x for x in f.one_shot_findings(exchange, RATE, ("one", "two"))}
    assert rows["socket after a one-shot complete"].observed == "closed"
    assert rows["completes coalesced"].observed == "n/a"
    assert rows["request_id echo (one-shot)"].switches == {"echo_external_request_id": True}


def test_word_times_running_on_across_segments_are_context_relative() -> None:
    def word(rid: str, start: float) -> rs.WordTimestamp:
        return rs.WordTimestamp(rs.Envelope(request_id=rid), "w", start, start + 0.1)

    # The first segment holds 0.5 s of audio; the second's first word starts there.
    ctx = f.Exchange(frames=[(0, chunk("a", 16000)), (0, word("a", 0.0)), (1, word("b", 0.52))])
    seg = f.Exchange(frames=[(0, chunk("a", 16000)), (0, word("a", 0.0)), (1, word("b", 0.02))])
    assert f.word_time_finding([("x", ctx)], RATE).observed == "context"
    assert f.word_time_finding([("x", seg)], RATE).observed == "segment"
    assert f.word_time_finding([("x", f.Exchange())], RATE).observed == "unknown"


def test_error_shapes_are_read_from_the_frame_as_sent() -> None:
    error = rs.ServerError(rs.Envelope(), "bad", "INVALID_VOICE")
    for raw, shape in [
        ({"status": "error", "message": "bad"}, "flat"),
        ({"status": "error", "error": {"code": "X", "message": "bad"}}, "nested"),
        ({"status": "error", "message": "bad", "error": {"code": "X", "message": "bad"}}, "both"),
    ]:
        exchange = f.Exchange(frames=[(0.0, error)], raw_errors=[raw])
        assert f.error_finding("bad voice", exchange).switches == {"error_shape": shape}
    shape = f.error_finding("bad voice", f.Exchange())
    assert (shape.key, shape.point, shape.observed) == (
        f.FindingKey.ERROR_SHAPE,
        "error shape (bad voice)",
        "none",
    )


def test_an_idle_check_refused_at_the_upgrade_is_a_finding() -> None:
    found = f.idle_refused_finding(f.FindingKey.IDLE_BELOW_RANGE, "0", 400)
    assert found.point == "?timeout=0 (below the range)"
    assert (found.observed, found.evidence) == ("refused at the upgrade (HTTP 400)", "?timeout=0")
    assert found.switches == {}
    assert found.facts == f.IdleFacts("0", 0, refused_status=400, refused=True)


def test_an_idle_close_within_moments_is_never_a_zero_timeout() -> None:
    found = f.idle_finding(f.FindingKey.IDLE_DEFAULT, None, 0.02, 65.0)
    assert found.switches == {"idle_timeout_s": 0.1}
    assert found.facts == f.IdleFacts(None, 65000, closed_after_ms=20)
    assert (found.observed, found.evidence) == ("closed after 0.1 s", "no ?timeout=; 20 ms")


def test_the_same_idle_timeout_measured_either_side_of_it_reads_the_same() -> None:
    # A server closing at 1 s is measured a little early one run, a little late the next.
    for key, asked in [(f.FindingKey.IDLE_DEFAULT, None), (f.FindingKey.IDLE_QUERY, "1")]:
        early = f.idle_finding(key, asked, 0.97, 3.0)
        late = f.idle_finding(key, asked, 1.03, 3.0)
        assert early.observed == late.observed == "closed after 1 s"
        assert early.switches == late.switches
        assert isinstance(early.facts, f.IdleFacts) and early.facts.closed_after_ms == 970
    switch = f.idle_finding(f.FindingKey.IDLE_DEFAULT, None, 0.97, 3.0).switches
    assert repr(switch["idle_timeout_s"]) == "1"


def test_the_seconds_shown_depend_only_on_the_rounded_value() -> None:
    # Once "closed after 1.0 s" and once "closed after 1 s" for one server: never again.
    by_shown: dict[object, set[str]] = {}
    for closed_ms in range(1, 70_000, 7):
        facts = f.IdleFacts("1", 3000, closed_after_ms=closed_ms)
        observed = f.idle_finding_of(f.FindingKey.IDLE_QUERY, facts).observed
        assert observed == f"closed after {facts.closed_after_s} s"
        assert not observed.endswith(".0 s"), observed
        by_shown.setdefault(facts.closed_after_s, set()).add(observed)
        # The same close measured in seconds reads the same as in whole milliseconds.
        seconds = f.idle_finding(f.FindingKey.IDLE_QUERY, "1", closed_ms / 1000, 3.0)
        assert seconds.observed == observed and seconds.evidence == f"?timeout=1; {closed_ms} ms"
    assert all(len(texts) == 1 for texts in by_shown.values())


def test_shown_seconds_keeps_tenths_only_below_a_second() -> None:
    assert [f.shown_seconds(s) for s in (0.02, 0.6, 0.94, 0.96, 1.4, 4.02)] == [
        "0.1 s",
        "0.6 s",
        "0.9 s",
        "1 s",
        "1 s",
        "4 s",
    ]


def test_ping_backoff_and_dicts_findings_carry_typed_facts() -> None:
    pong = f.Exchange(frames=[(0.0123, rs.Pong())])
    found = f.ping_finding(pong)
    assert found.facts == f.PingFacts("pong", pong_after_ms=12)
    assert (found.observed, found.evidence) == ("pong", "pong after 12 ms")
    refused = f.Exchange(frames=[(0.01, rs.ServerError(rs.Envelope(), "unknown type 'ping'"))])
    found = f.ping_finding(refused)
    assert found.facts == f.PingFacts("error", error="unknown type 'ping'")
    assert found.evidence == "error: unknown type 'ping'"
    assert f.ping_finding(f.Exchange()).facts == f.PingFacts("silence")

    backoff = f.backoff_finding(refused, RATE, 1.0)
    assert backoff.facts == f.OutcomeFacts("refuse", "unknown type 'ping'")
    assert backoff.switches == {"complete_backoff_with_context": "refuse"}
    assert f.backoff_finding(f.Exchange(), RATE, None).facts == f.OutcomeFacts(None)
    dicts = f.dicts_finding(f.Exchange(), refused, RATE)
    assert (dicts.key, dicts.facts) == (
        f.FindingKey.DICTS_ON_SOCKET,
        f.OutcomeFacts("refuse", "unknown type 'ping'"),
    )
