"""What is known about a Waves server's open points.

Where the documents leave a point open, the session copes with every reading
and learns which one holds from the server's own answers. Learning can cost
something the first time: a refused ``complete_backoff_ms`` costs the first
reply a round trip and a new context; an idle timeout shorter than asked for
costs one closed socket. :class:`ServerTraits` carries that knowledge in, from
a ``pipecat-waves probe`` report or from an earlier session, and back out
(:meth:`WavesSession.traits <pipecat_waves.protocol.session.WavesSession.traits>`),
so a later session starts where the last one finished.

Traits are hints. Only those whose being wrong costs no more than learning
would are acted on (see :meth:`WavesSession._apply_traits
<pipecat_waves.protocol.session.WavesSession._apply_traits>`); a wrong one
never costs a word or an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from pipecat_waves.probe.findings import Finding, ProbeReport

BackoffWithContext = Literal["apply", "ignore", "refuse"]
_F = TypeVar("_F")
DictsOnSocket = Literal["apply", "ignore", "refuse"]

#: The probe asks for a 1 s idle timeout; a close this soon honours it.
QUERY_HONOURED_WITHIN_MS = 1500


@dataclass(frozen=True)
class ServerTraits:
    """How a server answers the protocol's open points; None where unknown.

    Attributes:
        answers_pings: Whether ``{"type": "ping"}`` gets a pong. Recorded,
            not acted on: a session still sends its one first ping, which
            costs nothing and keeps stall detection honest.
        complete_backoff_with_context: What the server does with
            ``complete_backoff_ms`` beside a ``context_id``. Known
            ``"refuse"``, the field is never sent, so no reply is refused
            for it.
        idle_timeout_s: When the server closes an idle socket, as seen.
        honours_timeout_query: Whether ``?timeout=`` changes that. Known
            False, keep-alive pings follow ``idle_timeout_s``, not what the
            URL asks for.
        pronunciation_dicts_on_socket: What the live socket does with
            ``pronunciation_dicts`` (documented for HTTP only). Known
            ``"refuse"`` or ``"ignore"``, the field is never sent on it.
    """

    answers_pings: bool | None = None
    complete_backoff_with_context: BackoffWithContext | None = None
    idle_timeout_s: float | None = None
    honours_timeout_query: bool | None = None
    pronunciation_dicts_on_socket: DictsOnSocket | None = None

    def __post_init__(self) -> None:
        for name in ("complete_backoff_with_context", "pronunciation_dicts_on_socket"):
            value = getattr(self, name)
            if value not in (None, "apply", "ignore", "refuse"):
                raise ValueError(
                    f"{name} must be 'apply', 'ignore', 'refuse' or None, not {value!r}"
                )
        if self.idle_timeout_s is not None and not self.idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be above 0, not {self.idle_timeout_s!r}")

    def idle_timeout_for(self, requested_s: float) -> float:
        """How long a socket opened asking ``?timeout=requested_s`` may stay idle.

        What was asked, unless the server is known to keep a shorter timeout
        of its own whatever the URL asks.
        """
        if self.honours_timeout_query is False and self.idle_timeout_s is not None:
            return min(requested_s, self.idle_timeout_s)
        return requested_s

    def merged(self, newer: ServerTraits) -> ServerTraits:
        """These traits, with every point ``newer`` knows taken from it."""
        known = {f.name: getattr(newer, f.name) for f in fields(newer)}
        return replace(self, **{name: v for name, v in known.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        """The traits as plain data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ServerTraits:
        """Read traits written by :meth:`to_json`, or a whole probe report.

        Raises:
            ValueError: ``data`` is neither, or holds a value of the wrong kind.
        """
        if isinstance(data, dict) and "findings" in data:
            from pipecat_waves.probe.findings import ProbeReport

            return cls.from_probe(ProbeReport.from_json(data))
        if not isinstance(data, dict):
            raise ValueError("server traits must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown server trait(s) {', '.join(unknown)}")
        for name in ("answers_pings", "honours_timeout_query"):
            if data.get(name) is not None and not isinstance(data[name], bool):
                raise ValueError(f"server trait {name} must be true, false or null")
        idle = data.get("idle_timeout_s")
        if idle is not None and (isinstance(idle, bool) or not isinstance(idle, int | float)):
            raise ValueError("server trait idle_timeout_s must be a number or null")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ServerTraits:
        """Read traits from a file: ``pipecat-waves probe --json`` output, or :meth:`to_json`.

        Raises:
            ValueError: The file is missing, is not JSON, or holds neither.
        """
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise ValueError(
                f"cannot read server traits from {os.fspath(path)!r}: {e.strerror}"
            ) from None
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{os.fspath(path)!r} is not JSON ({e.msg}, line {e.lineno})"
            ) from None
        return cls.from_json(data)

    @classmethod
    def from_probe(cls, report: ProbeReport) -> ServerTraits:
        """The traits a probe report shows, from its findings' typed facts.

        Points it could not tell stay None.
        """
        from pipecat_waves.probe.findings import FindingKey, IdleFacts, OutcomeFacts, PingFacts

        by_key = {f.key: f for f in report.findings if f.key is not None}

        def facts(key: FindingKey, kind: type[_F]) -> _F | None:
            finding: Finding | None = by_key.get(key)
            found = finding.facts if finding is not None else None
            return found if isinstance(found, kind) else None

        ping = facts(FindingKey.PING, PingFacts)
        # Silence is not a refusal: it stays unknown.
        answers_pings = {"pong": True, "error": False}.get(ping.answer) if ping else None
        backoff = facts(FindingKey.BACKOFF_WITH_CONTEXT, OutcomeFacts)
        idle = facts(FindingKey.IDLE_DEFAULT, IdleFacts)
        idle_s = idle.closed_after_s if idle is not None else None
        query = facts(FindingKey.IDLE_QUERY, IdleFacts)
        honours: bool | None = None
        if query is not None:
            # Asked for 1 s: a close within 1.5 s is the query honoured. When
            # the default itself is that short the two cannot be told apart.
            default_short = idle_s is not None and idle_s * 1000 < QUERY_HONOURED_WITHIN_MS
            if not default_short:
                closed = query.closed_after_ms
                honours = closed is not None and closed < QUERY_HONOURED_WITHIN_MS
        dicts = facts(FindingKey.DICTS_ON_SOCKET, OutcomeFacts)
        return cls(
            answers_pings=answers_pings,
            complete_backoff_with_context=backoff.outcome if backoff else None,
            idle_timeout_s=float(idle_s) if idle_s is not None else None,
            honours_timeout_query=honours,
            pronunciation_dicts_on_socket=dicts.outcome if dicts else None,
        )
