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
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pipecat_waves.probe.findings import ProbeReport

BackoffWithContext = Literal["apply", "ignore", "refuse"]
DictsOnSocket = Literal["apply", "ignore", "refuse"]

_PING_POINT = "ping answered"
_BACKOFF_POINT = "complete_backoff_ms: 0 with context_id"
_IDLE_POINT = "idle timeout (default)"
_TIMEOUT_QUERY_POINT = "idle timeout with ?timeout=1"
#: The probe's finding on ``pronunciation_dicts`` sent on the live socket.
DICTS_POINT = "pronunciation_dicts on the live socket"
#: The probe asks for a 1 s idle timeout; a close this soon honours it.
QUERY_HONOURED_WITHIN_S = 1.5
_CLOSED_AFTER_MS = re.compile(r"(\d+) ms$")


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _closed_after_s(evidence: str) -> float | None:
    """When the probe saw the socket closed, from its evidence (``"?timeout=1; 1003 ms"``)."""
    found = _CLOSED_AFTER_MS.search(evidence.strip())
    return int(found.group(1)) / 1000 if found else None


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
        """The traits a probe report shows; points it could not tell stay None."""
        by_point = {f.point: f for f in report.findings}
        answers_pings: bool | None = None
        ping = by_point.get(_PING_POINT)
        if ping is not None and ping.observed == "pong":
            answers_pings = True
        elif ping is not None and ping.evidence.startswith("error"):
            answers_pings = False  # silence is not a refusal: it stays unknown
        backoff = by_point.get(_BACKOFF_POINT)
        with_context = backoff.switches.get("complete_backoff_with_context") if backoff else None
        idle = by_point.get(_IDLE_POINT)
        seen: Any = idle.switches.get("idle_timeout_s") if idle else None
        idle_s = float(seen) if _positive_number(seen) else None
        query = by_point.get(_TIMEOUT_QUERY_POINT)
        honours: bool | None = None
        if query is not None:
            # Asked for 1 s: a close within 1.5 s is the query honoured. When
            # the default itself is that short the two cannot be told apart.
            closed_s = _closed_after_s(query.evidence)
            default_short = idle_s is not None and idle_s < QUERY_HONOURED_WITHIN_S
            if not default_short:
                honours = closed_s is not None and closed_s < QUERY_HONOURED_WITHIN_S
        dicts = by_point.get(DICTS_POINT)
        on_socket = dicts.switches.get("pronunciation_dicts_on_socket") if dicts else None
        return cls(
            answers_pings=answers_pings,
            complete_backoff_with_context=with_context,
            idle_timeout_s=idle_s,
            honours_timeout_query=honours,
            pronunciation_dicts_on_socket=on_socket,
        )
