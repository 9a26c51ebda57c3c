"""Switches that make the local server behave one way or another.

Where the public documents leave a behaviour open, the server can do each
plausible thing; tests flip these switches (even between turns, since the
server reads them when it needs them) to prove a client copes with all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipecat_waves.protocol.constants import DEFAULT_IDLE_TIMEOUT_S, MAX_FRAGMENT_CHARS
from pipecat_waves.protocol.continuation import DEFAULT_MIN_SENTENCE_CHARS


@dataclass
class ServerBehaviour:
    """How the local server behaves. Every field has a realistic default.

    Attributes:
        ttfb_ms: Delay before a segment's first audio chunk.
        chunk_ms: Milliseconds of audio per WebSocket ``chunk`` frame.
        chunk_interval_ms: Pause between chunks (keeps audio in flight).
        handshake_delay_ms: Delay before the upgrade is answered (stands in
            for TLS and network round trips).
        echo_external_request_id: Echo the client's ``request_id`` as
            ``external_request_id`` on chunk, word and complete frames.
        complete_delay_ms: Delay between a segment's last chunk and its
            ``complete``; the next segment does not wait for it.
        coalesce_complete: When a segment starts while an earlier delayed
            ``complete`` is still pending, send only one (the later) for both.
        close_after_one_shot_complete: Close the socket after the ``complete``
            of a context-less request, as the oldest docs describe.
        cancel_stops_inflight: ``cancel_request`` also stops the context's
            queued and playing segments (no more chunks, no ``complete``).
        drop_after_chunks: Abort the TCP connection (no close frame) once a
            connection has sent this many chunks. Fires once per server.
        error_on_request: Answer the Nth synthesis-bearing message (1-based,
            counted across the server) with an error instead of audio.
        max_connections: Most simultaneous live sockets and HTTP streams.
        reject_with: How an excess socket is turned away: accepted then closed
            with 1008, or HTTP 429 before the upgrade.
        max_active_contexts: Most contexts synthesizing at once across the
            server (the account's concurrency). The first fragment of a context
            over the limit is answered with a ``CONCURRENCY_LIMIT`` error frame;
            a context holds its slot until it is closed, cancelled or its
            socket ends.
        ping_supported: Answer ``{"type": "ping"}`` with a pong; when False the
            server treats it like any message without text and answers with a
            validation error, as a server predating the keep-alive would.
        auth_failure: How a missing or wrong key is refused: HTTP 401 before
            the upgrade, or the upgrade accepted, an error frame sent and the
            socket closed with 1008.
        stall_after_chunks: After this many chunks on a connection, go silent
            without closing: no frames at all, not even pongs. Once per server.
        error_shape: ``"nested"`` (``error: {code, message}``) or ``"flat"``.
        word_timestamp_voices: Voices that emit word timestamps (``None``: all).
        min_sentence_chars: Shortest buffer a sentence boundary releases.
        max_chunk_chars: Longest buffer before a size release.
        idle_timeout_s: Idle timeout when the URL gives no ``?timeout=``.
        split_odd_bytes: Cut audio into odd-sized chunks, so chunks end in
            the middle of a 16-bit sample.
        interleave_contexts: Synthesize different contexts of one connection
            concurrently, their frames interleaved; otherwise segments of all
            contexts are served first come, first served, one at a time.
    """

    ttfb_ms: float = 0
    chunk_ms: float = 150
    chunk_interval_ms: float = 0
    handshake_delay_ms: float = 0
    echo_external_request_id: bool = True
    complete_delay_ms: float = 0
    coalesce_complete: bool = False
    close_after_one_shot_complete: bool = False
    cancel_stops_inflight: bool = True
    drop_after_chunks: int | None = None
    error_on_request: int | None = None
    max_connections: int | None = None
    reject_with: Literal["close_1008", "http_429"] = "close_1008"
    max_active_contexts: int | None = None
    auth_failure: Literal["http_401", "close_after_upgrade"] = "http_401"
    ping_supported: bool = True
    stall_after_chunks: int | None = None
    error_shape: Literal["nested", "flat"] = "nested"
    word_timestamp_voices: frozenset[str] | None = None
    min_sentence_chars: int = DEFAULT_MIN_SENTENCE_CHARS
    max_chunk_chars: int = MAX_FRAGMENT_CHARS
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    split_odd_bytes: bool = False
    interleave_contexts: bool = False
