"""What a probe saw, and what it means, without I/O.

The runner (:mod:`pipecat_waves.probe.runner`) records each check as an
:class:`Exchange`: the frames the server sent, stamped with the time they
arrived. The functions here turn exchanges into :class:`Finding` objects:
one open point of the protocol, what the server did (``observed``, a short
phrase that does not depend on timing noise, so two runs can be compared),
the evidence (timings, frame counts) and the local server switches that
reproduce it. The shape of a finding (its key, typed facts and the report
they make) is in :mod:`pipecat_waves.probe.report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipecat_waves.probe.report import (  # noqa: F401 - the findings' shape, re-exported
    FACT_TYPES,
    LABELS,
    REPORT_VERSION,
    Facts,
    Finding,
    FindingKey,
    IdleFacts,
    OutcomeFacts,
    PingFacts,
    ProbeReport,
    ms,
    ms_of,
    round_delay_ms,
    rounded_ms,
    rounded_seconds,
    shown_seconds,
)
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.constants import BYTES_PER_SAMPLE

#: A complete that comes later than this after the last chunk is held back.
HELD_BACK_S = 0.25


@dataclass
class Exchange:
    """Frames one check received on one socket, timed from the check's start.

    Attributes:
        frames: ``(seconds, event)`` in arrival order.
        marks: Named moments the check noted (``"sent"``, ``"cancel"``, ...).
        closed_at: When the server closed the socket, if it did.
        close_code: The close code, if the socket closed.
    """

    frames: list[tuple[float, rs.ServerEvent]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    closed_at: float | None = None
    close_code: int | None = None
    raw_errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Segment:
    """The frames of one server ``request_id``, which is new per released segment."""

    request_id: str | None
    sample_rate: int
    chunk_sizes: list[int] = field(default_factory=list)
    first_chunk_s: float | None = None
    last_chunk_s: float | None = None
    complete_s: float | None = None
    words: list[rs.WordTimestamp] = field(default_factory=list)
    echoes: set[str | None] = field(default_factory=set)

    @property
    def audio_s(self) -> float:
        """Seconds of audio received for the segment."""
        return sum(self.chunk_sizes) / (self.sample_rate * BYTES_PER_SAMPLE)

    @property
    def text(self) -> str:
        """The segment's words as the server timed them, joined by spaces."""
        return " ".join(w.word for w in self.words)


def segments(exchange: Exchange, sample_rate: int) -> list[Segment]:
    """Group an exchange's frames by the server's ``request_id``, in order of arrival."""
    found: dict[str | None, Segment] = {}
    for t, event in exchange.frames:
        if not isinstance(event, rs.AudioChunk | rs.WordTimestamp | rs.SegmentComplete):
            continue
        key = event.envelope.request_id
        seg = found.setdefault(key, Segment(key, sample_rate))
        seg.echoes.add(event.envelope.external_request_id)
        if isinstance(event, rs.AudioChunk):
            seg.chunk_sizes.append(len(event.audio))
            seg.first_chunk_s = t if seg.first_chunk_s is None else seg.first_chunk_s
            seg.last_chunk_s = t
        elif isinstance(event, rs.WordTimestamp):
            seg.words.append(event)
        else:
            seg.complete_s = t
    return list(found.values())


def errors(exchange: Exchange) -> list[rs.ServerError]:
    """The error frames of an exchange."""
    return [e for _, e in exchange.frames if isinstance(e, rs.ServerError)]


# ------------------------------------------------------------------ findings


def timing_finding(model: str, handshake_s: float, exchange: Exchange, rate: int) -> Finding:
    """Handshake time and time to first audio for one model."""
    segs = segments(exchange, rate)
    sent = exchange.marks.get("sent", 0.0)
    first = segs[0].first_chunk_s if segs else None
    ttfb = None if first is None else first - sent
    problem = errors(exchange)
    observed = "audio" if ttfb is not None else "no audio"
    if problem:
        observed = f"error: {problem[0].message[:60]}"
    switches: dict[str, Any] = {}
    if ttfb is not None:
        switches = {"handshake_delay_ms": round(handshake_s * 1000), "ttfb_ms": round(ttfb * 1000)}
    return Finding.of(
        FindingKey.TIMING,
        observed,
        f"handshake {ms(handshake_s)}, first audio {ms(ttfb)} after the request",
        switches,
        qualifier=model,
    )


def auth_finding(status: int | None, exchange: Exchange | None) -> Finding:
    """How a wrong key is refused: an HTTP status before the upgrade, or after it."""
    if status is not None:
        return Finding.of(
            FindingKey.AUTH,
            f"before the upgrade (HTTP {status})",
            "the WebSocket upgrade was answered with an HTTP status",
            {"auth_failure": "http_401"},
        )
    frames = exchange.frames if exchange is not None else []
    code = exchange.close_code if exchange is not None else None
    if exchange is None or (exchange.closed_at is None and not errors(exchange)):
        # Nothing refused it: a server without authentication (a local one, say).
        return Finding.of(
            FindingKey.AUTH, "not refused", "the socket stayed open with a wrong key", {}
        )
    return Finding.of(
        FindingKey.AUTH,
        "after the upgrade",
        f"upgrade accepted; {len(frames)} frame(s), then close code {code}",
        {"auth_failure": "close_after_upgrade"},
    )


def ping_finding(exchange: Exchange) -> Finding:
    """Whether ``{"type": "ping"}`` gets a pong."""
    pong = [t for t, e in exchange.frames if isinstance(e, rs.Pong)]
    problem = errors(exchange)
    if pong:
        facts = PingFacts("pong", pong_after_ms=round(pong[0] * 1000))
    elif problem:
        facts = PingFacts("error", error=problem[0].message[:60])
    else:
        facts = PingFacts("silence")
    return ping_finding_of(facts)


def ping_finding_of(facts: PingFacts) -> Finding:
    """The ping finding, its words rendered from ``facts``."""
    if facts.answer == "pong":
        observed, evidence = "pong", f"pong after {ms_of(facts.pong_after_ms)}"
    elif facts.answer == "error":
        observed, evidence = "no pong", f"error: {facts.error}"
    else:
        observed, evidence = "no pong", "no answer"
    supported = {"ping_supported": facts.answer == "pong"}
    return Finding.of(FindingKey.PING, observed, evidence, supported, facts=facts)


def idle_finding(
    key: FindingKey, asked_timeout: str | None, closed_at: float | None, waited_s: float
) -> Finding:
    """When an idle socket was closed, for one ``?timeout=`` value (None: not asked)."""
    closed_ms = None if closed_at is None else round(closed_at * 1000)
    return idle_finding_of(key, IdleFacts(asked_timeout, round(waited_s * 1000), closed_ms))


def idle_refused_finding(key: FindingKey, asked_timeout: str | None, status: int | None) -> Finding:
    """An idle check whose socket was refused at the upgrade."""
    return idle_finding_of(key, IdleFacts(asked_timeout, 0, refused_status=status, refused=True))


def idle_finding_of(key: FindingKey, facts: IdleFacts) -> Finding:
    """An idle finding, its words rendered from ``facts`` alone.

    The seconds shown depend only on the rounded value (:func:`rounded_seconds`
    of the whole milliseconds), so a close at 0.98 s and one at 1.02 s read the same.
    """
    if facts.refused:
        status = facts.refused_status
        how = f"HTTP {status}" if status is not None else "no HTTP status"
        return Finding.of(key, f"refused at the upgrade ({how})", facts.asked, {}, facts=facts)
    if facts.closed_after_s is None:
        waited = shown_seconds(facts.waited_ms / 1000)
        evidence = f"{facts.asked}; not waited longer"
        return Finding.of(key, f"open after {waited}", evidence, {}, facts=facts)
    switches: dict[str, Any] = {}
    if facts.asked_timeout is None:
        switches = {"idle_timeout_s": facts.closed_after_s}
    return Finding.of(
        key,
        f"closed after {facts.closed_after_s} s",
        f"{facts.asked}; {ms_of(facts.closed_after_ms)}",
        switches,
        facts=facts,
    )


def complete_delay(exchange: Exchange, rate: int) -> float | None:
    """Seconds from the last chunk to the last ``complete`` (None without a complete)."""
    segs = segments(exchange, rate)
    chunks = [s.last_chunk_s for s in segs if s.last_chunk_s is not None]
    completes = [s.complete_s for s in segs if s.complete_s is not None]
    if not chunks or not completes:
        return None
    return max(0.0, max(completes) - max(chunks))


def one_shot_findings(exchange: Exchange, rate: int, ids: tuple[str, str]) -> list[Finding]:
    """Two one-shots sent back to back: echo, complete delay, coalescing, socket reuse."""
    segs = segments(exchange, rate)
    echoed = any(rid in s.echoes for s in segs for rid in ids)
    delay = complete_delay(exchange, rate)
    completes = sum(1 for s in segs if s.complete_s is not None)
    findings = [
        Finding.of(
            FindingKey.ONE_SHOT_ECHO,
            "echoed" if echoed else "not echoed",
            f"external_request_id on {sum(1 for s in segs if set(ids) & s.echoes)}"
            f" of {len(segs)} replies",
            {"echo_external_request_id": echoed},
        )
    ]
    if delay is None:
        findings.append(Finding.of(FindingKey.COMPLETE_DELAY, "no complete", "", {}))
    else:
        held = delay >= HELD_BACK_S
        findings.append(
            Finding.of(
                FindingKey.COMPLETE_DELAY,
                f"held back about {shown_seconds(delay)}" if held else "at once",
                f"{ms(delay)} after the last chunk",
                {"complete_delay_ms": round_delay_ms(delay) if held else 0},
            )
        )
    first_complete = min((s.complete_s for s in segs if s.complete_s is not None), default=None)
    closed = (
        exchange.closed_at is not None
        and first_complete is not None
        and exchange.closed_at >= first_complete
    )
    findings.append(
        Finding.of(
            FindingKey.SOCKET_AFTER_ONE_SHOT,
            "closed" if closed else "stays open",
            f"{len(segs)} replies, {completes} complete(s), close code {exchange.close_code}",
            {"close_after_one_shot_complete": closed},
        )
    )
    held = delay is not None and delay >= HELD_BACK_S
    if not held or len(segs) < 2 or closed:
        why = "the socket closed after the first" if closed else "complete not held back"
        findings.append(Finding.of(FindingKey.COALESCED, "n/a", why, {}))
    else:
        coalesced = completes < len(segs)
        findings.append(
            Finding.of(
                FindingKey.COALESCED,
                "yes" if coalesced else "no",
                f"{completes} complete(s) for {len(segs)} back-to-back replies",
                {"coalesce_complete": coalesced},
            )
        )
    return findings


def backoff_finding(exchange: Exchange, rate: int, default_delay_s: float | None) -> Finding:
    """What ``complete_backoff_ms: 0`` beside a ``context_id`` did."""
    key = FindingKey.BACKOFF_WITH_CONTEXT
    problem = errors(exchange)
    if problem:
        facts = OutcomeFacts("refuse", problem[0].message[:80])
        return Finding.of(
            key, "refused", f"error: {facts.error}", _outcome_switch(key, facts), facts=facts
        )
    unknown = OutcomeFacts(None)
    delay = complete_delay(exchange, rate)
    if default_delay_s is None or default_delay_s < HELD_BACK_S:
        evidence = f"complete not held back anyway ({ms(delay)})"
        return Finding.of(key, "n/a", evidence, {}, facts=unknown)
    if delay is None:
        return Finding.of(key, "no complete", "", {}, facts=unknown)
    facts = OutcomeFacts("apply" if delay < default_delay_s / 2 else "ignore")
    return Finding.of(
        key,
        "honoured" if facts.outcome == "apply" else "ignored",
        f"complete {ms(delay)} after the last chunk (default {ms(default_delay_s)})",
        _outcome_switch(key, facts),
        facts=facts,
    )


def _outcome_switch(key: FindingKey, facts: OutcomeFacts) -> dict[str, Any]:
    name = {
        FindingKey.BACKOFF_WITH_CONTEXT: "complete_backoff_with_context",
        FindingKey.DICTS_ON_SOCKET: "pronunciation_dicts_on_socket",
    }[key]
    return {name: facts.outcome} if facts.outcome is not None else {}


def continuation_echo_finding(exchange: Exchange, rate: int, ids: tuple[str, ...]) -> Finding:
    """Whether request ids sent on fragments come back as ``external_request_id``."""
    segs = segments(exchange, rate)
    echoed = [s for s in segs if set(ids) & s.echoes]
    return Finding.of(
        FindingKey.CONTINUATION_ECHO,
        "echoed" if echoed else "not echoed",
        f"external_request_id on {len(echoed)} of {len(segs)} segments",
    )


def split_finding(
    key: FindingKey,
    exchange: Exchange,
    rate: int,
    sent_chars: int,
    switches: dict[str, Any] | None = None,
) -> Finding:
    """Segments and completes for one text, and the cut the server made."""
    segs = segments(exchange, rate)
    completes = sum(1 for s in segs if s.complete_s is not None)
    sizes = "+".join(str(len(s.text)) for s in segs) if all(s.words for s in segs) else "?"
    return Finding.of(
        key,
        f"{len(segs)} segment(s)",
        f"{sent_chars} chars sent; {completes} complete(s); segment chars {sizes}",
        switches,
    )


def long_sentence_switches(exchange: Exchange, rate: int, sent_chars: int) -> dict[str, Any]:
    """``max_chunk_chars`` that cuts the long sentence where the server did."""
    segs = segments(exchange, rate)
    if len(segs) == 1:
        return {"max_chunk_chars": sent_chars + 1}
    if segs and all(s.words for s in segs):
        # The cut keeps its trailing space: one more than the longest text.
        return {"max_chunk_chars": max(len(s.text) for s in segs) + 1}
    return {}


def per_sentence_switches(
    exchange: Exchange, rate: int, sentences: int, total: int
) -> dict[str, Any]:
    """``min_sentence_chars`` when sentences sent one per fragment were merged."""
    count = len(segments(exchange, rate))
    if count == sentences:
        return {"min_sentence_chars": 8}
    if count == 1:
        return {"min_sentence_chars": total + 1}
    return {}


def pause_finding(exchange: Exchange, rate: int, pause_s: float) -> Finding:
    """Whether a pause in the text stream released half a sentence."""
    segs = segments(exchange, rate)
    resumed = exchange.marks.get("resumed", math.inf)
    sent = exchange.marks.get("sent", 0.0)
    early = [s for s in segs if s.first_chunk_s is not None and s.first_chunk_s < resumed]
    point = FindingKey.PAUSE
    if not early:
        return Finding.of(
            point,
            "held until the sentence ended",
            f"{len(segs)} segment(s); paused {ms(pause_s)}",
            {"buffer_delay_override_ms": None},
        )
    after = (early[0].first_chunk_s or 0.0) - sent
    return Finding.of(
        point,
        "released the partial sentence",
        f"first audio {ms(after)} into a {ms(pause_s)} pause; {len(segs)} segment(s)",
        {"buffer_delay_override_ms": max(0, int(after * 10) * 100)},
    )


def cancel_finding(exchange: Exchange, rate: int) -> Finding:
    """Whether ``cancel_request`` stops the segment whose audio is in flight."""
    segs = segments(exchange, rate)
    cancel = exchange.marks.get("cancel")
    point = FindingKey.CANCEL
    if cancel is None or not segs:
        return Finding.of(point, "not measured", "no audio before the cancel", {})
    after = sum(1 for t, e in exchange.frames if isinstance(e, rs.AudioChunk) and t > cancel)
    completed = segs[0].complete_s is not None
    return Finding.of(
        point,
        "audio plays out" if completed else "stops the segment",
        f"{after} chunk(s) after the cancel; complete {'sent' if completed else 'not sent'}",
        {"cancel_stops_inflight": not completed},
    )


def quiet_close_finding(exchange: Exchange, listened_s: float) -> Finding:
    """What ``continue: false`` with nothing buffered gets."""
    closing = exchange.marks.get("close", math.inf)
    late = [e for t, e in exchange.frames if t > closing and not isinstance(e, rs.Pong)]
    if not late:
        return Finding.of(FindingKey.QUIET_CLOSE, "no reply", f"listened {ms(listened_s)}")
    kinds = sorted({type(e).__name__ for e in late})
    return Finding.of(FindingKey.QUIET_CLOSE, f"reply: {', '.join(kinds)}", f"{len(late)} frame(s)")


def word_time_finding(candidates: list[tuple[str, Exchange]], rate: int) -> Finding:
    """Whether word times restart per segment or run on over the context."""
    point = FindingKey.WORD_TIME
    for name, exchange in candidates:
        segs = [s for s in segments(exchange, rate) if s.words]
        if len(segs) < 2:
            continue
        first, second = segs[0], segs[1]
        start = second.words[0].start
        context = start >= first.audio_s / 2
        return Finding.of(
            point,
            "context" if context else "segment",
            f"{name}: 2nd segment's first word at {start:.2f} s; 1st segment {first.audio_s:.2f} s",
            {"word_time_reference": "context" if context else "segment"},
        )
    return Finding.of(point, "unknown", "no reply came as two segments with word times", {})


def error_shape(error: rs.ServerError | None, raw: dict[str, Any] | None) -> str:
    """``flat``, ``nested`` or ``both`` from an error frame as received."""
    if error is None or raw is None:
        return "none"
    nested = isinstance(raw.get("error"), dict)
    flat = isinstance(raw.get("message"), str)
    if nested and flat:
        return "both"
    return "nested" if nested else "flat" if flat else "other"


def error_finding(what: str, exchange: Exchange) -> Finding:
    """The error frame's shape for one bad request."""
    problem = errors(exchange)
    raw = exchange.raw_errors[0] if exchange.raw_errors else None
    shape = error_shape(problem[0] if problem else None, raw)
    switches: dict[str, Any] = {}
    if shape in ("flat", "nested", "both") and what == "bad voice":
        switches = {"error_shape": shape}
    evidence = "no error frame"
    if problem:
        evidence = f"code {problem[0].code or '-'}: {problem[0].message[:60]}"
    return Finding.of(FindingKey.ERROR_SHAPE, shape, evidence, switches, qualifier=what)


def chunk_finding(sizes: dict[int, list[int]]) -> Finding:
    """Audio per chunk at each sample rate (the last chunk of a reply is left out)."""
    parts = []
    per_ms: list[float] = []
    for rate, chunks in sorted(sizes.items()):
        body = chunks[:-1] or chunks
        if not body:
            parts.append(f"{rate}: -")
            continue
        chunk_ms = max(body) / (rate * BYTES_PER_SAMPLE) * 1000
        per_ms.append(chunk_ms)
        parts.append(f"{rate}: {chunk_ms:.0f} ms")
    switches = {"chunk_ms": round(max(per_ms))} if per_ms else {}
    evidence = ", ".join(f"{r}: {len(c)} chunks" for r, c in sorted(sizes.items()))
    return Finding.of(FindingKey.CHUNKS, ", ".join(parts), evidence, switches)


#: Audio at least this much longer with a dictionary than without it means
#: the dictionary was applied (its pronunciation is many words long).
DICT_APPLIED_RATIO = 1.5


def dicts_finding(plain: Exchange, with_dicts: Exchange, rate: int) -> Finding:
    """What the live socket did with ``pronunciation_dicts`` naming a dictionary.

    Args:
        plain: A one-shot request without the field.
        with_dicts: The same text naming a dictionary whose pronunciation of
            one of its words is many words long.
        rate: The sample rate of both.
    """
    key = FindingKey.DICTS_ON_SOCKET
    problem = errors(with_dicts)
    if problem:
        facts = OutcomeFacts("refuse", problem[0].message[:80])
        return Finding.of(
            key, "refused", f"error: {facts.error}", _outcome_switch(key, facts), facts=facts
        )
    without_s = sum(seg.audio_s for seg in segments(plain, rate))
    with_s = sum(seg.audio_s for seg in segments(with_dicts, rate))
    if without_s <= 0 or with_s <= 0:
        return Finding.of(key, "n/a", "no audio to compare", {}, facts=OutcomeFacts(None))
    facts = OutcomeFacts("apply" if with_s >= without_s * DICT_APPLIED_RATIO else "ignore")
    return Finding.of(
        key,
        "applied" if facts.outcome == "apply" else "ignored",
        f"{ms(with_s)} of audio with the dictionary, {ms(without_s)} without",
        _outcome_switch(key, facts),
        facts=facts,
    )


def dicts_unavailable_finding(reason: str) -> Finding:
    """The probe could not make a dictionary to name, so the point stays open."""
    return Finding.of(FindingKey.DICTS_ON_SOCKET, "n/a", reason[:80], {}, facts=OutcomeFacts(None))
