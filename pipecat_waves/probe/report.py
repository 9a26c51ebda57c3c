"""A probe's findings as data: a stable key per point, typed facts, the report.

:mod:`pipecat_waves.probe.findings` builds these from what the server did;
this module holds their shape, how they are written to JSON and read back
(reports of version 1 included), and the rounding that makes two runs
against the same server print the same words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

#: Version of the report's JSON layout.
#: 2 added each finding's ``key`` and typed ``facts``; 1 is still read.
REPORT_VERSION = 2


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
