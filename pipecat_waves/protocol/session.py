"""Client-side bookkeeping of a Waves live session, with no I/O.

This is where the hard rules of the plugin live; the Pipecat service is a shell
that moves bytes between sockets and this object. Text and server messages go
in; messages to send and events (audio for context X, word timestamp, context
finished, error) come out.

Vocabulary:

* **context**: one utterance as Pipecat sees it (an LLM turn or a
  ``TTSSpeakFrame``), named by Pipecat's context id.
* **wire context**: the ``context_id`` the server sees. Normally equal to the
  context id; a context moves to a fresh wire context when its connection drops
  (the server forgets contexts with the socket) or its voice changes mid-turn.
* **unit**: a piece of a context's text whose audio the server releases as one
  segment: a sentence. Units are what gets resent after a dropped connection.
* **lane**: one WebSocket connection. Normally there is exactly one.

Attribution. The server never names the context a reply belongs to. A lane
whose server echoes our ``request_id`` back (``external_request_id``) tells us
outright; we set ``request_id`` to the wire context id so that any echoed value
names its context. A lane that does not echo gets at most one context producing
audio at a time, so every reply on it belongs to that one context. Barge-in
follows from that (see :meth:`WavesSession.interrupt`): on an echoing lane the
cancelled context's late audio is recognised and dropped; a non-echoing lane
that may still carry the cancelled context's audio is retired (closed) and
replaced, because nothing on it can be trusted any more.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipecat_waves.protocol import requests as rq
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.audio import PcmAligner
from pipecat_waves.protocol.constants import BYTES_PER_SAMPLE, MAX_FRAGMENT_CHARS

#: How long a cancelled context is remembered, so its late audio is recognised.
CANCELLED_MEMORY_S = 30.0
#: Server request ids remembered per lane after their context is gone, so late
#: frames of an old reply are recognised instead of being taken for a new one.
SEGMENT_MEMORY = 512
#: An unattributable error this soon after a cancel is taken as the answer to it.
CANCEL_ANSWER_S = 2.0
#: How often a reply refused for the account's concurrency limit is retried.
MAX_RATE_LIMIT_RETRIES = 5

_PING_COMPLAINT = re.compile(
    r"required|missing|unknown (message )?type|MISSING_FIELD|INVALID_MESSAGE", re.IGNORECASE
)
_RATE_LIMIT_CODES = frozenset({"RATE_LIMIT", "CONCURRENCY_LIMIT", "TOO_MANY_REQUESTS", "429"})
_RATE_LIMIT_WORDS = re.compile(r"concurren|rate.?limit|too many", re.IGNORECASE)


def is_rate_limit(error: rs.ServerError) -> bool:
    """Whether ``error`` refuses a request for the account's concurrency or rate limit."""
    return (error.code or "").upper() in _RATE_LIMIT_CODES or bool(
        _RATE_LIMIT_WORDS.search(error.message)
    )


# A unit is sealed when its text ends a sentence (closing quotes may follow).
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f\u2026]+[\"'\u201d\u2019)\]]*\s*$")


# ---------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Send:
    """Send ``message`` (a JSON object) on ``lane``."""

    lane: int
    message: dict


@dataclass(frozen=True)
class AudioOut:
    """Audio for ``context_id``, whole samples only."""

    context_id: str
    pcm: bytes


@dataclass(frozen=True)
class WordOut:
    """A spoken word, ``time_s`` seconds after the start of its context's audio."""

    context_id: str
    word: str
    time_s: float


@dataclass(frozen=True)
class ContextFinished:
    """The server has sent everything it will ever send for ``context_id``."""

    context_id: str


@dataclass(frozen=True)
class ContextFailed:
    """The server refused ``context_id``; nothing more will come for it."""

    context_id: str
    error: rs.ServerError


@dataclass(frozen=True)
class LaneError:
    """An error the server reported that belongs to no context we know of."""

    lane: int
    error: rs.ServerError


@dataclass(frozen=True)
class OpenLane:
    """Open a new connection; tell :meth:`WavesSession.lane_opened` when it is up."""

    reason: str


@dataclass(frozen=True)
class ContextRetrying:
    """``context_id`` was refused for the concurrency limit; it is resent after ``delay_s``."""

    context_id: str
    error: rs.ServerError
    delay_s: float


@dataclass(frozen=True)
class LaneStalled:
    """``lane`` stopped answering pings: close it; its text moves on (see lane_lost)."""

    lane: int


@dataclass(frozen=True)
class CloseLane:
    """Close ``lane`` once the messages already queued for it are sent."""

    lane: int
    reason: str


Output = (
    Send
    | AudioOut
    | WordOut
    | ContextFinished
    | ContextFailed
    | LaneError
    | OpenLane
    | CloseLane
    | LaneStalled
    | ContextRetrying
)


# ------------------------------------------------------------------------ state


class LaneRole(enum.Enum):
    """What a lane is used for."""

    ACTIVE = "active"  # new contexts go here
    STANDBY = "standby"  # warm spare for when the active lane must be abandoned
    DRAINING = "draining"  # still delivering a context, takes no new ones
    RETIRED = "retired"  # being closed; everything it delivers is discarded


@dataclass
class SessionConfig:
    """Tunable timing of the session.

    Parameters:
        sample_rate: Rate requested from the server; used to turn byte counts
            into seconds.
        complete_guard_s: After a ``complete``, how long a closed context must
            stay quiet before it is taken as finished when the number of
            segments does not settle it. Far below Pipecat's 3 s default.
        silence_guard_s: How long a closed context may stay completely quiet
            after its last audio before it is taken as finished even without a
            ``complete`` (servers that delay or merge ``complete``).
        no_audio_timeout_s: How long a closed context that never produced any
            audio is waited for.
        keepalive_interval_s: Send a ping after this long without sending
            anything, so the server's idle timeout never closes a quiet socket.
        stall_probe_s: While audio is awaited, a lane silent for this long is
            probed with a ping.
        pong_timeout_s: A ping unanswered for this long means the lane is dead.
        cancel_grace_s: Audio of a cancelled reply that still arrives this long
            after the cancel shows a server that finishes in-flight audio; the
            lane is then abandoned so the next reply does not queue behind it.
        standby: Keep a warm spare connection when the server does not echo
            request ids, so a barge-in never makes the next reply wait for a
            handshake.
        max_lanes: Most connections open at once (the account allows five per
            unit of concurrency). Without echoes, replies that overlap each take
            a connection; past this many they wait for one to free up.
    """

    sample_rate: int = 24000
    complete_guard_s: float = 0.25
    silence_guard_s: float = 1.5
    no_audio_timeout_s: float = 8.0
    keepalive_interval_s: float = 20.0
    stall_probe_s: float = 2.0
    pong_timeout_s: float = 2.0
    cancel_grace_s: float = 0.3
    standby: bool = True
    max_lanes: int = 3


@dataclass
class _Unit:
    text: str = ""
    sealed: bool = False
    done: bool = False  # its audio has been received in full
    spoken_chars: int = 0  # prefix known to be spoken from word timestamps


@dataclass
class _Segment:
    request_id: str | None
    context: _Context
    wire_id: str
    unit_index: int | None
    aligner: PcmAligner = field(default_factory=PcmAligner)
    audio_bytes: int = 0
    words: list[tuple[str, float, float | None]] = field(default_factory=list)
    completed: bool = False


@dataclass
class _Context:
    id: str
    params: rq.VoiceParams
    max_buffer_delay_ms: int | None
    created_at: float
    wire_id: str = ""
    wire_seq: int = 0
    lane: int | None = None
    units: list[_Unit] = field(default_factory=list)
    # Index in ``units`` of the first unit sent on the current wire context:
    # the n-th segment of a wire context carries unit ``wire_unit_start + n``.
    wire_unit_start: int = 0
    wire_segments: int = 0
    wire_completed: int = 0
    wire_timed_words: int = 0
    # Whole sentences sent with no server-side buffering: the server releases
    # each as its own segment, so segments and units correspond one to one.
    exact_units: bool = True
    outbox: list[dict] = field(default_factory=list)  # built, waiting for a lane
    sent_any: bool = False
    close_requested: bool = False
    close_sent_at: float | None = None
    cancelled: bool = False
    cancelled_at: float = 0.0
    error: rs.ServerError | None = None
    error_at: float = 0.0
    retries: int = 0
    not_before: float = 0.0  # a refused reply waits this long before it is resent
    finished: bool = False
    last_frame_at: float | None = None
    last_frame_was_complete: bool = False
    audio_offset_s: float = 0.0  # audio of finished segments, for word times
    received_audio: bool = False

    @property
    def live(self) -> bool:
        """Whether the server may still send audio for this context."""
        return self.sent_any and not self.finished


@dataclass
class _Lane:
    id: int
    role: LaneRole
    echo: bool | None = None  # does the server echo our request_id?
    last_sent_at: float = 0.0
    last_recv_at: float = 0.0
    ping_sent_at: float | None = None
    last_text_at: float = 0.0  # a reply's text last went out on this lane
    messages: int = 0
    segments: dict[str, _Segment] = field(default_factory=dict)


class WavesSession:
    """Everything the client must remember about its contexts and connections.

    All methods are synchronous and take the current time as an argument, so
    the rules can be tested without sockets or an event loop. Each returns the
    outputs the I/O shell must act on, in order.
    """

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self._contexts: dict[str, _Context] = {}
        self._by_wire: dict[str, _Context] = {}
        self._lanes: dict[int, _Lane] = {}
        self._lane_requests = 0  # OpenLane outputs not yet answered
        self._standby_wanted = False
        # Learned: the server keeps streaming a cancelled reply's released audio.
        self._cancel_leaks = False
        # Learned: the server answers our keep-alive with an error.
        self._ping_unsupported = False

    # ----------------------------------------------------------------- queries

    @property
    def active_lane(self) -> int | None:
        """The lane new contexts are sent on, if one is open."""
        return next(
            (lane.id for lane in self._lanes.values() if lane.role is LaneRole.ACTIVE), None
        )

    @property
    def standby_lane(self) -> int | None:
        """The warm spare lane, if one is open."""
        return next(
            (lane.id for lane in self._lanes.values() if lane.role is LaneRole.STANDBY), None
        )

    def lane_role(self, lane: int) -> LaneRole | None:
        """Role of ``lane``, or None once it is gone."""
        state = self._lanes.get(lane)
        return state.role if state else None

    def lane_echoes(self, lane: int) -> bool | None:
        """Whether the server on ``lane`` echoes request ids (None: not known yet)."""
        state = self._lanes.get(lane)
        return state.echo if state else None

    def live_contexts(self) -> list[str]:
        """Contexts that are neither finished nor cancelled, oldest first."""
        return [c.id for c in self._contexts.values() if not c.finished and not c.cancelled]

    def is_live(self, context_id: str) -> bool:
        """Whether ``context_id`` is known and not finished or cancelled."""
        ctx = self._contexts.get(context_id)
        return bool(ctx and not ctx.finished and not ctx.cancelled)

    # ------------------------------------------------------------------- lanes

    def lane_opened(self, lane: int, now: float) -> list[Output]:
        """A connection the shell opened is ready; route waiting text to it."""
        self._lane_requests = max(0, self._lane_requests - 1)
        role = LaneRole.STANDBY if self.active_lane is not None else LaneRole.ACTIVE
        self._lanes[lane] = _Lane(lane, role, last_sent_at=now, last_recv_at=now)
        return self._dispatch(now)

    def lane_lost(self, lane: int, now: float) -> list[Output]:
        """A connection closed or failed. Its unfinished text moves to another lane.

        Every unit whose audio had not fully arrived is sent again on a new wire
        context; audio already received is kept, so nothing is lost and (with
        word timestamps) nothing is repeated.
        """
        state = self._lanes.get(lane)
        if state is None:
            return []
        if state.role is not LaneRole.RETIRED and state.messages and self.config.standby:
            # A server that drops working connections: keep a spare warm from
            # now on. (One refused right away is a limit, not a drop.)
            self._standby_wanted = True
        for segment in state.segments.values():
            self._note_spoken_words(segment)
        del self._lanes[lane]
        out: list[Output] = []
        for ctx in self._contexts.values():
            if ctx.lane != lane or ctx.finished:
                continue
            if ctx.cancelled:
                ctx.finished = True
                continue
            self._rebind_for_resend(ctx)
        if state.role is LaneRole.ACTIVE:
            self._promote_standby()
        if self.active_lane is None and not self._lane_requests:
            out.extend(self._request_lane("reconnect after the connection was lost"))
        out.extend(self._dispatch(now))
        return out

    def lane_failed_to_open(self) -> None:
        """An :class:`OpenLane` request could not be carried out (the shell retries)."""
        self._lane_requests = max(0, self._lane_requests - 1)

    # -------------------------------------------------------------------- text

    def send_text(
        self,
        context_id: str,
        text: str,
        params: rq.VoiceParams,
        now: float,
        *,
        max_buffer_delay_ms: int | None = None,
        seal: bool = True,
    ) -> list[Output]:
        """Queue ``text`` as the next fragment of ``context_id``.

        Args:
            context_id: Pipecat's context id; the first call opens the context.
            text: The fragment, spacing included.
            params: Voice parameters. A different voice or language than the
                context started with moves the rest of the context to a new wire
                context, since the server fixes those per context.
            now: Current time in seconds.
            max_buffer_delay_ms: Sent with every fragment of the context.
            seal: ``True`` when ``text`` is a whole sentence (sentence
                aggregation); ``False`` for streamed tokens, which are grouped
                into units at sentence ends.
        """
        ctx = self._contexts.get(context_id)
        if ctx is None:
            ctx = _Context(context_id, params, max_buffer_delay_ms, created_at=now)
            ctx.wire_id = context_id
            self._contexts[context_id] = ctx
            self._by_wire[context_id] = ctx
        if ctx.cancelled or ctx.finished or ctx.close_requested:
            return []
        if (params.voice_id, params.language, params.model) != (
            ctx.params.voice_id,
            ctx.params.language,
            ctx.params.model,
        ) and ctx.outbox + ctx.units:
            self._start_new_wire_context(ctx, close_current=True)
        ctx.params = params
        if not seal or max_buffer_delay_ms != 0:
            ctx.exact_units = False
        for piece in _split_long(text):
            self._add_to_units(ctx, piece, seal)
            ctx.outbox.append(self._fragment(ctx, piece, more=True))
        return self._dispatch(now)

    def close_context(self, context_id: str, now: float) -> list[Output]:
        """No more text for ``context_id``: let the server speak what it holds."""
        ctx = self._contexts.get(context_id)
        if not ctx or ctx.cancelled or ctx.finished or ctx.close_requested:
            return []
        ctx.close_requested = True
        for unit in ctx.units:
            unit.sealed = True
        if not ctx.units and not ctx.outbox:
            # Nothing was ever said; the server has nothing to answer.
            ctx.finished = True
            return [ContextFinished(ctx.id)]
        ctx.outbox.append(self._fragment(ctx, "", more=False))
        return self._dispatch(now)

    # ---------------------------------------------------------------- barge-in

    def interrupt(self, context_ids: Iterable[str], now: float) -> list[Output]:
        """Barge-in: cancel ``context_ids`` so that none of their audio comes out again.

        This is the whole barge-in rule set:

        1. Each context is marked cancelled at once, so any frame attributed to
           it from now on is dropped, whatever the server does.
        2. The server is told to drop the context's buffered text
           (``cancel_request``) and to end it (``context_close``), freeing its
           concurrency slot.
        3. A lane that does not echo request ids and may still carry audio of a
           cancelled context cannot tell that audio from the next reply's, so it
           is retired: closed, and replaced by the warm standby (or a new
           connection opened in the background). So is an echoing lane once
           the server has shown that it finishes a cancelled reply's audio
           anyway, since the next reply would queue behind it (see
           :meth:`_receive_attributed`). Nothing here waits on the network; the
           shell sends and closes later.
        """
        out: list[Output] = []
        tainted: set[int] = set()
        for context_id in context_ids:
            ctx = self._contexts.get(context_id)
            if ctx is None or ctx.cancelled or ctx.finished:
                continue
            ctx.cancelled = True
            ctx.cancelled_at = now
            ctx.outbox.clear()
            if not ctx.sent_any or ctx.lane is None:
                ctx.finished = True
                continue
            lane = self._lanes.get(ctx.lane)
            if lane is None:
                ctx.finished = True
                continue
            voice = ctx.params.voice_id
            out.append(Send(lane.id, rq.build_cancel(ctx.wire_id, voice)))
            out.append(Send(lane.id, rq.build_close(ctx.wire_id, voice)))
            lane.last_sent_at = now
            if lane.echo is not True or self._cancel_leaks:
                tainted.add(lane.id)
        for lane_id in tainted:
            out.extend(self._retire(lane_id, "barge-in on a connection that does not echo ids"))
        out.extend(self._dispatch(now))
        return out

    def forget(self, context_id: str) -> None:
        """Drop all memory of a context that Pipecat is done with."""
        ctx = self._contexts.pop(context_id, None)
        if ctx is None:
            return
        ctx.finished = True
        for wire_id in [w for w, c in self._by_wire.items() if c is ctx]:
            del self._by_wire[wire_id]
        # Its segments stay known (now pointing at a finished context) so that a
        # late frame, a delayed ``complete`` say, is dropped rather than taken
        # for the next reply on a lane that does not echo ids.
        for lane in self._lanes.values():
            while len(lane.segments) > SEGMENT_MEMORY:
                del lane.segments[next(iter(lane.segments))]

    # ---------------------------------------------------------------- receive

    def receive(self, lane: int, event: rs.ServerEvent, now: float) -> list[Output]:
        """Handle one message from the server on ``lane``."""
        state = self._lanes.get(lane)
        if state is None:
            return []
        state.last_recv_at = now
        state.messages += 1
        pinged = state.ping_sent_at is not None
        state.ping_sent_at = None  # any message proves the lane is alive
        if state.role is LaneRole.RETIRED:
            return []
        if isinstance(event, rs.Pong | rs.Unrecognized):
            return []
        if isinstance(event, rs.ServerError):
            if pinged and self._answers_ping(state, event):
                return []
            return self._on_error(state, event, now)
        echo_before = state.echo
        segment = self._attribute(state, event.envelope, now)
        if state.echo is not echo_before:
            # What the lane is now known to be may call for a standby.
            return [*self._receive_attributed(segment, event, now), *self._dispatch(now)]
        return self._receive_attributed(segment, event, now)

    def _receive_attributed(
        self, segment: _Segment | None, event: rs.ServerEvent, now: float
    ) -> list[Output]:
        if segment is None:
            return []
        ctx = segment.context
        ctx.last_frame_at = now
        ctx.last_frame_was_complete = isinstance(event, rs.SegmentComplete)
        if ctx.cancelled and now - ctx.cancelled_at > self.config.cancel_grace_s:
            return self._on_cancel_leak(segment, now)
        if ctx.cancelled or ctx.finished:
            return []  # late audio of a barged-in or finished context: never played
        out: list[Output] = []
        if isinstance(event, rs.AudioChunk):
            pcm = segment.aligner.feed(event.audio)
            segment.audio_bytes += len(event.audio)
            if pcm:
                ctx.received_audio = True
                out.append(AudioOut(ctx.id, pcm))
        elif isinstance(event, rs.WordTimestamp):
            segment.words.append((event.word, event.start, event.end))
            if segment.wire_id == ctx.wire_id:
                ctx.wire_timed_words += 1
            out.append(WordOut(ctx.id, event.word, ctx.audio_offset_s + event.start))
        elif isinstance(event, rs.SegmentComplete):
            self._complete_segment(segment)
        finished = self._check_finished(ctx, now)
        if finished:
            # A reply waiting for this lane to be free can go now.
            out.extend(finished)
            out.extend(self._dispatch(now))
        return out

    def _on_cancel_leak(self, segment: _Segment, now: float) -> list[Output]:
        """The server goes on streaming a cancelled reply: stop queueing behind it."""
        lane_id = segment.context.lane
        lane = self._lanes.get(lane_id) if lane_id is not None else None
        if lane is None or lane.role is LaneRole.RETIRED:
            return []
        self._cancel_leaks = True
        if self.config.standby:
            self._standby_wanted = True
        out = self._retire(lane.id, "the server keeps streaming a cancelled reply")
        return [*out, *self._dispatch(now)]

    # ------------------------------------------------------------------ timers

    def poll(self, now: float) -> list[Output]:
        """Act on time passing: turn ends, keep-alives and stall detection."""
        out: list[Output] = []
        for ctx in list(self._contexts.values()):
            if ctx.cancelled and now - ctx.cancelled_at > CANCELLED_MEMORY_S:
                self.forget(ctx.id)
                continue
            out.extend(self._check_finished(ctx, now))
        for lane in list(self._lanes.values()):
            out.extend(self._check_lane(lane, now))
        out.extend(self._dispatch(now))
        return out

    # -------------------------------------------------------------- internals

    def _fragment(self, ctx: _Context, text: str, *, more: bool) -> dict:
        return rq.build_fragment(
            text,
            ctx.params,
            context_id=ctx.wire_id,
            more=more,
            max_buffer_delay_ms=ctx.max_buffer_delay_ms,
            request_id=ctx.wire_id,
        )

    def _add_to_units(self, ctx: _Context, text: str, seal: bool) -> None:
        if not ctx.units or ctx.units[-1].sealed:
            ctx.units.append(_Unit())
        unit = ctx.units[-1]
        unit.text += text
        if seal or _SENTENCE_END.search(unit.text):
            unit.sealed = True

    def _start_new_wire_context(self, ctx: _Context, *, close_current: bool) -> None:
        """Move ``ctx`` to a fresh server-side context id."""
        if close_current and (ctx.outbox or ctx.sent_any):
            ctx.outbox.append(self._fragment(ctx, "", more=False))
        ctx.wire_seq += 1
        ctx.wire_id = f"{ctx.id}.{ctx.wire_seq}"
        self._by_wire[ctx.wire_id] = ctx
        ctx.wire_unit_start = len(ctx.units)
        ctx.wire_segments = 0
        ctx.wire_completed = 0
        ctx.wire_timed_words = 0
        for unit in ctx.units:
            unit.sealed = True

    def _rebind_for_resend(self, ctx: _Context) -> None:
        """Rebuild the outbox of a context whose lane is gone, from unfinished units."""
        ctx.wire_seq += 1
        ctx.wire_id = f"{ctx.id}.{ctx.wire_seq}"
        self._by_wire[ctx.wire_id] = ctx
        remaining = [u for u in ctx.units if not u.done]
        for unit in remaining:
            unit.text = unit.text[unit.spoken_chars :].lstrip()
            unit.spoken_chars = 0
        ctx.units = [u for u in ctx.units if u.done] + [u for u in remaining if u.text]
        ctx.wire_unit_start = len(ctx.units) - len([u for u in remaining if u.text])
        ctx.wire_segments = 0
        ctx.wire_completed = 0
        ctx.wire_timed_words = 0
        ctx.outbox = [
            self._fragment(ctx, u.text, more=True) for u in ctx.units[ctx.wire_unit_start :]
        ]
        if ctx.close_requested:
            ctx.outbox.append(self._fragment(ctx, "", more=False))
            ctx.close_sent_at = None
        ctx.lane = None
        ctx.sent_any = False
        ctx.last_frame_at = None
        ctx.last_frame_was_complete = False

    def _lane_free_for_new_context(self, lane: _Lane, ctx: _Context) -> bool:
        """Whether ``ctx`` may start on ``lane`` without making replies ambiguous."""
        if lane.echo:
            return True
        return not any(
            other.lane == lane.id and other.live and other is not ctx
            for other in self._contexts.values()
        )

    def _choose_lane(self, ctx: _Context) -> _Lane | None:
        active = self._lanes.get(self.active_lane) if self.active_lane is not None else None
        if active and self._lane_free_for_new_context(active, ctx):
            return active
        standby = self._lanes.get(self.standby_lane) if self.standby_lane is not None else None
        if standby and self._lane_free_for_new_context(standby, ctx):
            # The active lane is busy with a reply that cannot be told apart from
            # this one; swap roles instead of waiting for it to finish.
            if active:
                active.role = LaneRole.DRAINING
            standby.role = LaneRole.ACTIVE
            return standby
        return None  # wait: the active lane frees up when its reply finishes

    def _dispatch(self, now: float) -> list[Output]:
        """Send every outbox whose context has (or can get) a lane."""
        out: list[Output] = []
        for ctx in self._contexts.values():
            if not ctx.outbox or ctx.cancelled or ctx.finished or ctx.not_before > now:
                continue
            if ctx.lane is None or ctx.lane not in self._lanes:
                lane = self._choose_lane(ctx)
                if lane is None:
                    continue
                ctx.lane = lane.id
            lane = self._lanes[ctx.lane]
            for message in ctx.outbox:
                out.append(Send(lane.id, message))
                if message.get("continue") is False:
                    ctx.close_sent_at = now
            ctx.outbox = []
            ctx.sent_any = True
            lane.last_sent_at = now
            lane.last_text_at = now
        out.extend(self._recycle_drained_lanes())
        if self.active_lane is None and not self._lane_requests and self._contexts_waiting():
            out.extend(self._request_lane("no open connection for queued text"))
        if (
            self._standby_wanted
            and self.standby_lane is None
            and not self._lane_requests
            and self.active_lane is not None
            and self._open_lanes() < self.config.max_lanes
        ):
            out.extend(self._request_lane("warm standby"))
        return out

    def _open_lanes(self) -> int:
        return sum(1 for lane in self._lanes.values() if lane.role is not LaneRole.RETIRED)

    def _contexts_waiting(self) -> bool:
        return any(c.outbox and not c.cancelled and not c.finished for c in self._contexts.values())

    def _request_lane(self, reason: str) -> list[Output]:
        self._lane_requests += 1
        return [OpenLane(reason)]

    def _promote_standby(self) -> None:
        standby = self.standby_lane
        if standby is not None:
            self._lanes[standby].role = LaneRole.ACTIVE

    def _retire(self, lane_id: int, reason: str) -> list[Output]:
        lane = self._lanes.get(lane_id)
        if lane is None or lane.role is LaneRole.RETIRED:
            return []
        was_active = lane.role is LaneRole.ACTIVE
        lane.role = LaneRole.RETIRED
        out: list[Output] = [CloseLane(lane_id, reason)]
        # Contexts still bound to the retired lane that were not cancelled
        # (e.g. a queued uninterruptible reply) move on, text intact.
        for ctx in self._contexts.values():
            if ctx.lane == lane_id and not ctx.cancelled and not ctx.finished:
                self._rebind_for_resend(ctx)
            elif ctx.lane == lane_id:
                ctx.finished = True
        if was_active:
            self._promote_standby()
        if self.active_lane is None and not self._lane_requests:
            out.extend(self._request_lane("replace a retired connection"))
        return out

    def _recycle_drained_lanes(self) -> list[Output]:
        """A draining lane whose reply finished becomes the standby (or is closed)."""
        out: list[Output] = []
        for lane in self._lanes.values():
            if lane.role is not LaneRole.DRAINING:
                continue
            if any(c.lane == lane.id and c.live for c in self._contexts.values()):
                continue
            if self.standby_lane is None:
                lane.role = LaneRole.STANDBY
            else:
                lane.role = LaneRole.RETIRED
                out.append(CloseLane(lane.id, "surplus connection"))
        return out

    def _attribute(self, lane: _Lane, envelope: rs.Envelope, now: float) -> _Segment | None:
        """Find which context a status message belongs to, or None if no one's."""
        rid = envelope.request_id
        if rid is not None and rid in lane.segments:
            return lane.segments[rid]
        ctx: _Context | None
        wire_id = envelope.external_request_id
        if wire_id is not None:
            ctx = self._by_wire.get(wire_id)
            if ctx is None:
                return None  # echo of a context long forgotten
            if lane.echo is None:
                lane.echo = True
        else:
            if lane.echo is not False:
                # Without echoes this lane can only ever carry one reply at a
                # time, and a barge-in will cost it; keep a spare warm.
                lane.echo = False
                if self.config.standby:
                    self._standby_wanted = True
            candidates = [
                c
                for c in self._contexts.values()
                if c.lane == lane.id and c.sent_any and (c.cancelled or not c.finished)
            ]
            if len(candidates) != 1:
                return None  # stale or ambiguous: never guess
            ctx = candidates[0]
        if rid is None:
            # A server that names no segment: frames until the next complete
            # belong to one, so they share an aligner and a unit.
            rid = f"unnamed:{ctx.id}"
            if rid in lane.segments and not lane.segments[rid].completed:
                return lane.segments[rid]
        wire = wire_id if wire_id is not None else ctx.wire_id
        unit_index = ctx.wire_unit_start + ctx.wire_segments if wire == ctx.wire_id else None
        segment = _Segment(rid, ctx, wire, unit_index)
        if wire == ctx.wire_id:
            ctx.wire_segments += 1
        lane.segments[rid] = segment
        return segment

    def _complete_segment(self, segment: _Segment) -> None:
        if segment.completed:
            return
        segment.completed = True
        ctx = segment.context
        dropped = segment.aligner.reset()
        del dropped  # an odd trailing byte at a segment's end is not a sample
        ctx.audio_offset_s += segment.audio_bytes / (BYTES_PER_SAMPLE * self.config.sample_rate)
        if segment.wire_id == ctx.wire_id:
            ctx.wire_completed += 1
        if segment.unit_index is not None and segment.unit_index < len(ctx.units):
            ctx.units[segment.unit_index].done = True

    def _note_spoken_words(self, segment: _Segment) -> None:
        """Record how much of an unfinished segment's unit has certainly been received.

        Word timestamps name verbatim words of the input; every word whose audio
        ended before the audio we hold is spoken and must not be sent again.
        """
        ctx = segment.context
        if segment.completed or segment.unit_index is None or segment.unit_index >= len(ctx.units):
            return
        unit = ctx.units[segment.unit_index]
        received_s = segment.audio_bytes / (BYTES_PER_SAMPLE * self.config.sample_rate)
        pos = 0
        for word, _start, end in segment.words:
            at = unit.text.find(word, pos)
            if at < 0 or end is None or end > received_s + 1e-3:
                break
            pos = at + len(word)
        unit.spoken_chars = max(unit.spoken_chars, pos)

    def _check_finished(self, ctx: _Context, now: float) -> list[Output]:
        """Decide whether a closed context has had all its audio."""
        if ctx.finished or ctx.cancelled:
            return []
        if ctx.error is not None:
            quiet = now - max(ctx.last_frame_at or 0.0, ctx.error_at)
            if quiet < self.config.complete_guard_s:
                return []
            ctx.finished = True
            return [ContextFailed(ctx.id, ctx.error)]
        if not ctx.close_requested or ctx.close_sent_at is None:
            return []
        quiet = now - max(ctx.last_frame_at or 0.0, ctx.close_sent_at)
        if quiet < self._quiet_needed(ctx):
            return []
        ctx.finished = True
        for unit in ctx.units:
            unit.done = True
        return [ContextFinished(ctx.id)]

    def _quiet_needed(self, ctx: _Context) -> float:
        """Seconds of quiet after which a closed context is taken as finished (0: now)."""
        units = ctx.units[ctx.wire_unit_start :]
        complete = ctx.last_frame_was_complete
        if complete and ctx.wire_completed >= len(units):
            return 0.0  # every unit's segment has completed: exact, no waiting
        if complete and 0 < _word_count(units) <= ctx.wire_timed_words:
            return 0.0  # word timestamps account for every word sent
        if ctx.exact_units and ctx.wire_segments < len(units):
            # A sentence released on its own has not started yet (a long one
            # can take a while); only a server that lost it keeps us waiting.
            return self.config.no_audio_timeout_s
        if complete and ctx.wire_segments >= len(units):
            return self.config.complete_guard_s  # completes merged or a unit split
        if ctx.last_frame_at is not None:
            # Completes delayed or missing, or (tokens) sentences merged by the
            # server in ways the counts cannot tell: wait out a longer silence.
            return self.config.silence_guard_s
        return self.config.no_audio_timeout_s

    def next_deadline(self, now: float) -> float:
        """The earliest time at which :meth:`poll` may have something to do.

        Lets the shell sleep exactly as long as nothing can happen, instead of
        waking on a fixed tick. Events that bring a deadline forward (new text,
        a close, a ``complete``, an error) are the shell's cue to ask again.
        """
        due = [now + self.config.keepalive_interval_s]
        for ctx in self._contexts.values():
            if ctx.finished or ctx.cancelled:
                continue
            if ctx.outbox and ctx.not_before > now:
                due.append(ctx.not_before)
            if ctx.error is not None:
                due.append(
                    max(ctx.last_frame_at or 0.0, ctx.error_at) + self.config.complete_guard_s
                )
            elif ctx.close_requested and ctx.close_sent_at is not None:
                quiet_since = max(ctx.last_frame_at or 0.0, ctx.close_sent_at)
                due.append(quiet_since + self._quiet_needed(ctx))
        for lane in self._lanes.values():
            if lane.role is LaneRole.RETIRED:
                continue
            if lane.ping_sent_at is not None:
                due.append(lane.ping_sent_at + self.config.pong_timeout_s)
                continue
            due.append(lane.last_sent_at + self.config.keepalive_interval_s)
            if not self._ping_unsupported and any(
                c.lane == lane.id and c.live and not c.cancelled for c in self._contexts.values()
            ):
                due.append(max(lane.last_recv_at, lane.last_text_at) + self.config.stall_probe_s)
        return min(due)

    def _check_lane(self, lane: _Lane, now: float) -> list[Output]:
        if lane.role is LaneRole.RETIRED:
            return []
        if lane.ping_sent_at is not None:
            if now - lane.ping_sent_at >= self.config.pong_timeout_s:
                lane.ping_sent_at = None
                lane.role = LaneRole.RETIRED
                return [LaneStalled(lane.id)]
            return []
        if self._ping_unsupported:
            return []  # nothing safe to probe with; a dead socket shows as a closed one
        awaiting = any(
            c.lane == lane.id and c.live and not c.cancelled for c in self._contexts.values()
        )
        idle_out = now - lane.last_sent_at >= self.config.keepalive_interval_s
        # Silence counts from the later of the last frame and the last text:
        # a lane that was rightly quiet before this reply is not stalled.
        silent_since = max(lane.last_recv_at, lane.last_text_at)
        stalled = awaiting and now - silent_since >= self.config.stall_probe_s
        if idle_out or stalled:
            lane.ping_sent_at = now
            lane.last_sent_at = now
            return [Send(lane.id, rq.build_ping())]
        return []

    def _answers_ping(self, lane: _Lane, error: rs.ServerError) -> bool:
        """Whether ``error`` is a server refusing our keep-alive (it then gets no more).

        It names no request, and either nothing else is under way on the lane or
        it complains of a missing field or an unknown message type: our
        synthesis messages carry every required field, so such a complaint can
        only be about the ping.
        """
        if error.envelope.request_id or error.envelope.external_request_id:
            return False
        busy = any(c.lane == lane.id and c.live for c in self._contexts.values())
        if busy and not _PING_COMPLAINT.search(f"{error.code or ''} {error.message}"):
            return False
        self._ping_unsupported = True
        return True

    def _on_error(self, lane: _Lane, error: rs.ServerError, now: float) -> list[Output]:
        ctx = self._attribute_error(lane, error.envelope, now)
        if ctx is None:
            return [LaneError(lane.id, error)]
        if ctx.cancelled or ctx.finished or ctx.error is not None:
            return []
        if is_rate_limit(error) and not ctx.received_audio and ctx.retries < MAX_RATE_LIMIT_RETRIES:
            # Refused before a sample was produced: send the whole reply again
            # once a slot may be free. Nothing was heard, so nothing repeats.
            ctx.retries += 1
            delay = min(0.25 * 2**ctx.retries, 4.0)
            self._rebind_for_resend(ctx)
            ctx.not_before = now + delay
            return [ContextRetrying(ctx.id, error, delay)]
        # Nothing more is sent for the context, and nothing is sent to close it
        # either: a server that already dropped it would answer with a second
        # error for the same failure. Audio of segments already under way
        # still plays; the failure is reported after it (see _check_finished).
        ctx.error = error
        ctx.error_at = now
        ctx.outbox.clear()
        ctx.close_requested = True
        return self._check_finished(ctx, now)

    def _attribute_error(self, lane: _Lane, envelope: rs.Envelope, now: float) -> _Context | None:
        if envelope.request_id and envelope.request_id in lane.segments:
            return lane.segments[envelope.request_id].context
        if envelope.external_request_id in self._by_wire:
            return self._by_wire[envelope.external_request_id]
        # An error naming nothing, right after we cancelled or closed a reply on
        # this lane, is most likely the server's answer to that (say, "unknown
        # context"); it must not fail the reply that is playing now.
        recent = [
            c
            for c in self._contexts.values()
            if c.lane == lane.id and c.cancelled and now - c.cancelled_at < CANCEL_ANSWER_S
        ]
        if recent:
            return recent[-1]
        live = [c for c in self._contexts.values() if c.lane == lane.id and c.live]
        return live[0] if len(live) == 1 else None


def _word_count(units: list[_Unit]) -> int:
    return sum(len(u.text.split()) for u in units)


def _split_long(text: str) -> list[str]:
    """Cut text longer than the documented fragment limit at word boundaries."""
    if len(text) <= MAX_FRAGMENT_CHARS:
        return [text]
    pieces: list[str] = []
    rest = text
    while len(rest) > MAX_FRAGMENT_CHARS:
        cut = rest.rfind(" ", 0, MAX_FRAGMENT_CHARS)
        if cut <= 0:
            cut = MAX_FRAGMENT_CHARS
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    return pieces
