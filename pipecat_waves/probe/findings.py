"""What a probe saw, and what it means, without I/O.

The runner (:mod:`pipecat_waves.probe.runner`) records each check as an
:class:`Exchange`: the frames the server sent, stamped with the time they
arrived. The functions here turn exchanges into :class:`Finding` objects:
one open point of the protocol, what the server did (``observed``, a short
phrase that does not depend on timing noise, so two runs can be compared),
the evidence (timings, frame counts) and the local server switches that
reproduce it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.constants import BYTES_PER_SAMPLE

#: A complete that comes later than this after the last chunk is held back.
HELD_BACK_S = 0.25
#: Version of the report's JSON layout.
#: 2 added each finding's ``key`` and typed ``facts``; 1 is still read.
REPORT_VERSION = 2


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


class FindingKey(StrEnum):
    """Which open point a finding answers: stable across versions, unlike its label."""

    TIMING = "timing"
    AUTH = "auth"
    PING = "ping"
    ONE_SHOT_ECHO = "one_shot_echo"
    COMPLETE_DELAY = "complete_delay"
    SOCKET_AFTER_ONE_SHOT = "socket_after_one_shot"
    COALESCED = "coalesced"
    BACKOFF_WITH_CONTEXT = "backoff_with_context"
    CONTINUATION_ECHO = "continuation_echo"
    LONG_SENTENCE = "long_sentence"
    SEVERAL_SENTENCES = "several_sentences"
    PER_FRAGMENT = "per_fragment"
    WORD_TIME = "word_time"
    PAUSE = "pause"
    CANCEL = "cancel"
    QUIET_CLOSE = "quiet_close"
    ERROR_SHAPE = "error_shape"
    CHUNKS = "chunks"
    DICTS_ON_SOCKET = "dicts_on_socket"
    IDLE_QUERY = "idle_query"
    IDLE_BELOW_RANGE = "idle_below_range"
    IDLE_DEFAULT = "idle_default"


#: The label of each point in the table (a qualifier, when given, follows in brackets).
LABELS: dict[FindingKey, str] = {
    FindingKey.TIMING: "handshake and TTFB",
    FindingKey.AUTH: "wrong key refused",
    FindingKey.PING: "ping answered",
    FindingKey.ONE_SHOT_ECHO: "request_id echo (one-shot)",
    FindingKey.COMPLETE_DELAY: "complete without complete_backoff_ms",
    FindingKey.SOCKET_AFTER_ONE_SHOT: "socket after a one-shot complete",
    FindingKey.COALESCED: "completes coalesced",
    FindingKey.BACKOFF_WITH_CONTEXT: "complete_backoff_ms: 0 with context_id",
    FindingKey.CONTINUATION_ECHO: "request_id echo (continuation)",
    FindingKey.LONG_SENTENCE: "one long sentence",
    FindingKey.SEVERAL_SENTENCES: "several sentences at once",
    FindingKey.PER_FRAGMENT: "one sentence per fragment",
    FindingKey.WORD_TIME: "word time reference",
    FindingKey.PAUSE: "pause mid-sentence (max_buffer_delay_ms 5000)",
    FindingKey.CANCEL: "cancel_request with audio in flight",
    FindingKey.QUIET_CLOSE: "close with nothing buffered",
    FindingKey.ERROR_SHAPE: "error shape",
    FindingKey.CHUNKS: "audio per chunk",
    FindingKey.DICTS_ON_SOCKET: "pronunciation_dicts on the live socket",
    FindingKey.IDLE_QUERY: "idle timeout with ?timeout=1",
    FindingKey.IDLE_BELOW_RANGE: "?timeout=0 (below the range)",
    FindingKey.IDLE_DEFAULT: "idle timeout (default)",
}

#: What a server did with a field it was sent: applied, ignored or refused it.
Outcome = Literal["apply", "ignore", "refuse"]


@dataclass(frozen=True)
class PingFacts:
    """What a ``{"type": "ping"}`` got.

    Attributes:
        answer: ``"pong"``, ``"error"`` (refused) or ``"silence"``.
        pong_after_ms: When the pong came, after the ping.
        error: The start of the refusal's message.
    """

    answer: Literal["pong", "error", "silence"]
    pong_after_ms: int | None = None
    error: str = ""


@dataclass(frozen=True)
class IdleFacts:
    """When an idle socket was closed, for one ``?timeout=`` value (or none).

    Attributes:
        asked_timeout: The ``?timeout=`` value sent; None when none was.
        waited_ms: How long the check waited at most.
        closed_after_ms: When the server closed the socket; None if it did not.
        refused_status: The HTTP status that refused the upgrade, if one did.
        refused: The upgrade was refused (with or without a status).
    """

    asked_timeout: str | None
    waited_ms: int
    closed_after_ms: int | None = None
    refused_status: int | None = None
    refused: bool = False

    @property
    def asked(self) -> str:
        """The query, in the table's words."""
        return "no ?timeout=" if self.asked_timeout is None else f"?timeout={self.asked_timeout}"

    @property
    def closed_after_s(self) -> float | int | None:
        """The close, rounded so jitter gives one value (see :func:`rounded_seconds`)."""
        if self.closed_after_ms is None:
            return None
        return rounded_ms(self.closed_after_ms)


@dataclass(frozen=True)
class OutcomeFacts:
    """What a server did with a field (``complete_backoff_ms``, ``pronunciation_dicts``).

    Attributes:
        outcome: Applied, ignored or refused; None when the check could not tell.
        error: The start of the refusal's message, when refused.
    """

    outcome: Outcome | None
    error: str = ""


Facts = PingFacts | IdleFacts | OutcomeFacts

#: The facts each key carries (a key not here carries none).
FACT_TYPES: dict[FindingKey, type[PingFacts] | type[IdleFacts] | type[OutcomeFacts]] = {
    FindingKey.PING: PingFacts,
    FindingKey.IDLE_QUERY: IdleFacts,
    FindingKey.IDLE_BELOW_RANGE: IdleFacts,
    FindingKey.IDLE_DEFAULT: IdleFacts,
    FindingKey.BACKOFF_WITH_CONTEXT: OutcomeFacts,
    FindingKey.DICTS_ON_SOCKET: OutcomeFacts,
}


@dataclass(frozen=True)
class Finding:
    """One open point of the protocol, as the server answered it.

    ``key`` and ``facts`` are what programs read (:class:`ServerTraits
    <pipecat_waves.protocol.traits.ServerTraits>` does); ``observed`` and
    ``evidence`` are rendered from the facts for people.

    Attributes:
        point: The question, e.g. ``"ping answered"`` (the table's label).
        observed: What the server did, in words stable across runs.
        evidence: Timings and counts behind ``observed``.
        switches: :class:`~pipecat_waves.server.ServerBehaviour` fields that
            make the local server do the same.
        key: Which point this is; None for a point this version does not know
            (read from a newer probe's report).
        facts: The typed values behind the words, for the points that have them.
    """

    point: str
    observed: str
    evidence: str = ""
    switches: dict[str, Any] = field(default_factory=dict)
    key: FindingKey | None = None
    facts: Facts | None = None

    @classmethod
    def of(
        cls,
        key: FindingKey,
        observed: str,
        evidence: str = "",
        switches: dict[str, Any] | None = None,
        *,
        qualifier: str = "",
        facts: Facts | None = None,
    ) -> Finding:
        """A finding on ``key``, labelled as the table shows it."""
        point = f"{LABELS[key]} ({qualifier})" if qualifier else LABELS[key]
        return cls(point, observed, evidence, dict(switches or {}), key, facts)

    def to_json(self) -> dict[str, Any]:
        """The finding as plain data."""
        data: dict[str, Any] = {
            "point": self.point,
            "observed": self.observed,
            "evidence": self.evidence,
            "switches": dict(self.switches),
        }
        if self.key is not None:
            data["key"] = self.key.value
        if self.facts is not None:
            data["facts"] = asdict(self.facts)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        """Read a finding written by :meth:`to_json` (or by a version before keys and facts).

        Raises:
            ValueError: A key this version knows carries facts of the wrong shape.
        """
        point = str(data["point"])
        switches = dict(data.get("switches") or {})
        key = _key_of(data.get("key"), point)
        facts_data = data.get("facts")
        if key is None or key not in FACT_TYPES:
            facts = None
        elif facts_data is None:
            facts = _facts_from_switches(key, switches)
        else:
            facts = _facts_from_json(key, facts_data)
        return cls(
            point=point,
            observed=str(data["observed"]),
            evidence=str(data.get("evidence", "")),
            switches=switches,
            key=key,
            facts=facts,
        )


_BY_LABEL = {label: key for key, label in LABELS.items()}


def _key_of(written: Any, point: str) -> FindingKey | None:
    """The finding's key: as written, else (a report without keys) by its label."""
    if written is not None:
        try:
            return FindingKey(written)
        except ValueError:
            return None  # a point of a newer probe
    if point in _BY_LABEL:
        return _BY_LABEL[point]
    for key in (FindingKey.TIMING, FindingKey.ERROR_SHAPE):
        if point.startswith(f"{LABELS[key]} ("):
            return key
    return None


def _facts_from_switches(key: FindingKey, switches: dict[str, Any]) -> Facts | None:
    """Facts for a report written before facts were: those its switches still hold."""
    if key is FindingKey.PING and switches.get("ping_supported") is True:
        return PingFacts("pong")
    if key is FindingKey.IDLE_DEFAULT:
        seen = switches.get("idle_timeout_s")
        if isinstance(seen, int | float) and not isinstance(seen, bool) and seen > 0:
            return IdleFacts(None, 0, closed_after_ms=round(seen * 1000))
    name = {
        FindingKey.BACKOFF_WITH_CONTEXT: "complete_backoff_with_context",
        FindingKey.DICTS_ON_SOCKET: "pronunciation_dicts_on_socket",
    }.get(key)
    if name is not None and switches.get(name) in ("apply", "ignore", "refuse"):
        return OutcomeFacts(switches[name])
    return None


def _facts_from_json(key: FindingKey, data: Any) -> Facts:
    kind = FACT_TYPES[key]
    if not isinstance(data, dict):
        raise ValueError(f"facts of {key.value!r} must be an object")
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"facts of {key.value!r}: unknown field(s) {', '.join(unknown)}")
    facts = kind(**data)
    for name, annotation in get_type_hints(kind).items():
        value = getattr(facts, name)
        if not _fits(value, annotation):
            raise ValueError(f"facts of {key.value!r}: {name} cannot be {value!r}")
    return facts


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a value read from JSON fits a facts field's type (``int | None``, a Literal)."""
    if get_origin(annotation) in (Union, UnionType):
        return any(_fits(value, arg) for arg in get_args(annotation))
    if get_origin(annotation) is Literal:
        return value in get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(annotation, type) and isinstance(value, annotation)


@dataclass
class ProbeReport:
    """Every finding of one probe run."""

    server: str
    characters: int
    findings: list[Finding] = field(default_factory=list)

    def switches(self) -> dict[str, Any]:
        """The local server switches that reproduce what the probe saw."""
        merged: dict[str, Any] = {}
        for finding in self.findings:
            merged.update(finding.switches)
        return merged

    def observed(self) -> list[tuple[str, str]]:
        """``(point, observed)`` rows: what two runs are compared on."""
        return [(f.point, f.observed) for f in self.findings]

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (what ``--json`` writes)."""
        return {
            "version": REPORT_VERSION,
            "server": self.server,
            "characters": self.characters,
            "findings": [f.to_json() for f in self.findings],
        }

    @classmethod
    def from_json(cls, data: Any) -> ProbeReport:
        """Read a report written by :meth:`to_json`.

        Raises:
            ValueError: ``data`` is not a probe report.
        """
        if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
            raise ValueError("not a probe report (no 'findings' list)")
        try:
            findings = [Finding.from_json(f) for f in data["findings"]]
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"a finding of the probe report is malformed ({e})") from None
        characters = data.get("characters", 0)
        if isinstance(characters, bool) or not isinstance(characters, int):
            raise ValueError(
                f"probe report: 'characters' must be a whole number, not {characters!r}"
            )
        return cls(str(data.get("server", "")), characters, findings)

    def table(self) -> str:
        """The findings as one aligned, plain-text table."""
        rows = [("point", "observed", "evidence")]
        rows += [(f.point, f.observed, f.evidence) for f in self.findings]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        lines = [f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}".rstrip() for r in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        return "\n".join(lines)


# ------------------------------------------------------------------ helpers


def ms(seconds: float | None) -> str:
    """Seconds shown as whole milliseconds (``-`` when unknown)."""
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def ms_of(milliseconds: int | None) -> str:
    """Whole milliseconds as shown (``-`` when unknown); ``ms_of(round(s * 1000)) == ms(s)``."""
    return "-" if milliseconds is None else f"{milliseconds} ms"


def round_delay_ms(seconds: float) -> int:
    """A measured hold-back as the switch value: nearest 100 ms."""
    return int(round(seconds * 10) * 100)


def rounded_seconds(seconds: float) -> float | int:
    """A measured duration rounded so that jitter around a value gives that value.

    Whole seconds from 1 s up, else tenths (never below 0.1 s: a duration was
    measured). The choice of unit follows the *rounded* value, so 0.98 s and
    1.02 s both give 1, not 1.0 the one time and 1 the other.
    """
    tenths = round(seconds, 1)
    if tenths >= 1:
        return round(seconds)
    return max(0.1, tenths)


def rounded_ms(milliseconds: int) -> float | int:
    """:func:`rounded_seconds` of a duration kept in whole milliseconds (as facts keep it)."""
    return rounded_seconds(milliseconds / 1000)


def shown_seconds(seconds: float) -> str:
    """A measured duration in words stable across runs (see :func:`rounded_seconds`)."""
    return f"{rounded_seconds(seconds)} s"


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
