"""Switches that make the local server behave one way or another.

Where the public documents leave a behaviour open, the server can do each
plausible thing; tests flip these switches (even between turns, since the
server reads them when it needs them) to prove a client copes with all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from pipecat_waves.protocol.constants import DEFAULT_IDLE_TIMEOUT_S, DOCUMENTED_COMPLETE_BACKOFF_MS
from pipecat_waves.protocol.continuation import DEFAULT_MIN_SENTENCE_CHARS, STRICT_MAX_CHUNK_CHARS

if TYPE_CHECKING:
    from pipecat_waves.probe.findings import ProbeReport


@dataclass
class ServerBehaviour:
    """How the local server behaves.

    The defaults are the *strictest* documented reading of the protocol: where
    the documents allow a behaviour but do not promise it, the default leaves
    it out, so a client tested against the defaults relies only on what is
    promised. Concretely, by default the server:

    * never echoes the client's ``request_id`` (the echo is documented, but
      whether it survives continuations is not; a client must attribute
      frames by send order and the server's own ``request_id``);
    * honours ``cancel_request`` only as documented: buffered text is
      dropped, while a segment already released keeps streaming its audio and
      still sends its ``complete``;
    * sends one ``complete`` per released segment, immediately;
    * releases segments by its own rules with a size limit
      (:data:`~pipecat_waves.protocol.continuation.STRICT_MAX_CHUNK_CHARS`)
      below the client's 250-character fragment limit, so one fragment may
      come back as several segments;
    * holds a context's concurrency slot until its audio is done, even after
      the context was closed or cancelled;
    * refuses ``pronunciation_dicts`` on the live socket: the field is
      documented for the HTTP endpoints only, so a client must not count on
      the socket taking it, and a refusal is the reading it must cope with
      (it learns and resends; one that ignores or applies the field asks
      nothing of it).

    The other fields switch on each alternative reading (or inject faults).

    Attributes:
        ttfb_ms: Delay before a segment's first audio chunk (on SSE, before
            a request's first audio event).
        chunk_ms: Milliseconds of audio per WebSocket ``chunk`` frame.
        chunk_interval_ms: Pause between chunks (keeps audio in flight), on
            the live socket and between SSE audio events alike.
        handshake_delay_ms: Delay before the upgrade is answered (stands in
            for TLS and network round trips).
        echo_external_request_id: Echo the client's ``request_id`` as
            ``external_request_id`` on every frame that answers a request
            (chunk, word, complete and error frames). Off by default.
        complete_delay_ms: Delay between a segment's last chunk and its
            ``complete`` when the request carries no ``complete_backoff_ms``
            (which, when sent, wins). The documented default is 4000 ms, so
            that is the default here: a client must not wait on ``complete``.
            0 suits quick demos with clients that do. The next segment
            never waits for it.
        complete_backoff_with_context: What a ``complete_backoff_ms`` sent
            with a ``context_id`` does: ``"apply"`` (documented: it sets that
            segment's delay), ``"ignore"`` (the server's own delay applies
            anyway) or ``"refuse"`` (a validation error, as the docs give for
            the other legacy buffering fields ``flush`` and ``max_buffer_flush_ms``).
        coalesce_complete: When a segment starts while an earlier delayed
            ``complete`` is still pending, send only one (the later) for both.
        close_after_one_shot_complete: Close the socket after the ``complete``
            of a context-less request, as the oldest docs describe.
        cancel_stops_inflight: ``cancel_request`` also stops the context's
            queued and playing segments (no more chunks, no ``complete``).
            Off by default: cancel drops only buffered text.
        drop_after_chunks: Abort the TCP connection (no close frame) once a
            connection has sent this many chunks. Fires once per server.
        error_on_request: Answer the Nth synthesis-bearing message (1-based,
            counted across the server, SSE and sync requests included) with
            an error instead of audio (HTTP 500 on SSE and sync).
        max_connections: Most simultaneous live sockets and HTTP streams.
        reject_with: How an excess socket is turned away: accepted then closed
            with 1008, or HTTP 429 before the upgrade.
        max_active_contexts: Most contexts synthesizing at once across the
            server (the account's concurrency). The first text-bearing
            fragment of a context over the limit is answered with a
            ``CONCURRENCY_LIMIT`` error frame. A context holds its slot from
            its first text until it has ended (``continue: false``,
            ``context_close`` or ``cancel_request``) *and* every segment it
            released has finished or been stopped; closing the socket frees
            its slots at once. Context-less requests take no slot.
        ping_supported: Answer ``{"type": "ping"}`` with a pong; when False the
            server treats it like any message without text and answers with a
            validation error, as a server predating the keep-alive would.
        auth_failure: How a missing or wrong key is refused: HTTP 401 before
            the upgrade, or the upgrade accepted, an error frame sent and the
            socket closed with 1008.
        stall_after_chunks: After this many chunks on a connection, go silent
            without closing: no frames at all, not even pongs. Once per server.
        error_shape: ``"flat"`` (documented: ``message`` beside ``status``,
            no code), ``"nested"`` (``error: {code, message}``) or ``"both"``.
        word_timestamp_voices: Voices that emit word timestamps (``None``: all).
        word_time_reference: What word ``start``/``end`` are measured from:
            ``"segment"`` (documented: the start of that segment's audio, so
            times restart with every server ``request_id``) or ``"context"``
            (the start of the context's audio on this connection: the audio
            already sent for its earlier segments is added). Context-less
            requests are always timed from their own start.
        min_sentence_chars: Shortest buffer a sentence boundary releases. A
            large value (say 200) merges several sentences into one segment,
            released by ``continue: false``, the size rule or the delay.
        max_chunk_chars: Longest buffer before a size release. A small value
            (say 30) splits one sentence into several segments.
        buffer_delay_override_ms: When set, continuation buffers are released
            this long after their first still-buffered fragment whatever
            ``max_buffer_delay_ms`` the client asked for, so a pause in a token
            stream releases half a sentence.
        idle_timeout_s: Idle timeout when the URL gives no ``?timeout=``.
        split_odd_bytes: Cut audio into odd-sized chunks, so chunks end in
            the middle of a 16-bit sample (SSE audio events too).
        interleave_contexts: Synthesize different contexts of one connection
            concurrently, their frames interleaved; otherwise segments of all
            contexts are served first come, first served, one at a time.
        pronunciation_dicts_on_socket: What a live message carrying
            ``pronunciation_dicts`` gets: ``"refuse"`` (an ``INVALID_FIELD``
            error naming the field; the message is not spoken), ``"ignore"``
            (spoken without the dictionaries) or ``"apply"`` (spoken with
            them, as the HTTP endpoints always do).
    """

    ttfb_ms: float = 0
    chunk_ms: float = 150
    chunk_interval_ms: float = 0
    handshake_delay_ms: float = 0
    echo_external_request_id: bool = False
    complete_delay_ms: float = DOCUMENTED_COMPLETE_BACKOFF_MS
    complete_backoff_with_context: Literal["apply", "ignore", "refuse"] = "apply"
    coalesce_complete: bool = False
    close_after_one_shot_complete: bool = False
    cancel_stops_inflight: bool = False
    drop_after_chunks: int | None = None
    error_on_request: int | None = None
    max_connections: int | None = None
    reject_with: Literal["close_1008", "http_429"] = "close_1008"
    max_active_contexts: int | None = None
    auth_failure: Literal["http_401", "close_after_upgrade"] = "http_401"
    ping_supported: bool = True
    stall_after_chunks: int | None = None
    error_shape: Literal["flat", "nested", "both"] = "flat"
    word_timestamp_voices: frozenset[str] | None = None
    word_time_reference: Literal["segment", "context"] = "segment"
    min_sentence_chars: int = DEFAULT_MIN_SENTENCE_CHARS
    max_chunk_chars: int = STRICT_MAX_CHUNK_CHARS
    buffer_delay_override_ms: int | None = None
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    split_odd_bytes: bool = False
    interleave_contexts: bool = False
    pronunciation_dicts_on_socket: Literal["apply", "ignore", "refuse"] = "refuse"

    @classmethod
    def from_probe(cls, report: ProbeReport | dict[str, Any]) -> ServerBehaviour:
        """The switches that make the local server answer as a probed server did.

        Args:
            report: A :class:`~pipecat_waves.probe.ProbeReport`, or the data
                ``pipecat-waves probe --json`` wrote.

        Returns:
            The strict defaults, with every switch the probe could tell
            replaced by what it saw. Points it could not tell (a complete
            not held back hides coalescing, say) keep their defaults.

        Raises:
            ValueError: ``report`` is not a probe report, or holds a switch
                value of the wrong type.
        """
        from pipecat_waves.probe.findings import ProbeReport

        if not isinstance(report, ProbeReport):
            report = ProbeReport.from_json(report)
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in report.switches().items():
            if name not in known:
                continue  # written by a newer probe: the server cannot do it yet
            default = getattr(cls(), name)
            if value is not None and default is not None and not _same_kind(value, default):
                raise ValueError(f"probe report: switch {name!r} has the wrong type ({value!r})")
            values[name] = value
        return cls(**values)


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a value read from JSON fits a field whose default is ``default``."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default))
