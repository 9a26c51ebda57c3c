"""Pipecat text-to-speech service for Smallest.ai's Waves live API."""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    StartFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.text.base_text_aggregator import TextType
from pipecat.utils.types import NOT_GIVEN, NotGiven, is_given

from pipecat_waves.connection import (
    LiveSocket,
    LiveSocketHandlers,
    WavesConnectError,
    is_refusal_close,
    live_url,
    open_socket,
)
from pipecat_waves.credentials import clean_api_key, logger, scrub
from pipecat_waves.first_clause import FirstClause, FirstClauseAggregator
from pipecat_waves.language import language_to_waves_language
from pipecat_waves.pipecat_adapter import ReportedFailuresAdapter, install_text_aggregator
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol.backoff import backoff_s
from pipecat_waves.protocol.constants import DEFAULT_BASE_URL
from pipecat_waves.protocol.requests import VoiceParams
from pipecat_waves.protocol.traits import ServerTraits
from pipecat_waves.resample import StreamResampler, wire_rate_for
from pipecat_waves.settings_check import settings_problem

__all__ = ["WavesTTSService", "WavesTTSSettings"]

#: ``max_buffer_delay_ms`` per aggregation mode. Sentences arrive whole, so the
#: server should speak each at once instead of buffering a second time; streamed
#: tokens are left for the server to gather into sentences, within a bound.
SENTENCE_MODE_BUFFER_DELAY_MS = 0
TOKEN_MODE_BUFFER_DELAY_MS = 500

#: The first clause of every turn goes out early, by these thresholds.
FIRST_CLAUSE = FirstClause()

#: Longest the session timer sleeps, and how late after a deadline it wakes
#: (so a deadline is never checked a hair too early and missed).
MAX_TIMER_SLEEP_S = 5.0

#: An outage (no connection can be opened) is reported once it lasts this long;
#: a shorter one that a retry repairs is only logged.
OUTAGE_REPORT_S = 3.0
TIMER_SLACK_S = 0.005

_ERROR_CATEGORIES = {
    "INVALID_VOICE": ErrorCategory.INVALID_REQUEST,
    "INVALID_FIELD": ErrorCategory.INVALID_REQUEST,
    "MISSING_FIELD": ErrorCategory.INVALID_REQUEST,
    "INVALID_MESSAGE": ErrorCategory.INVALID_REQUEST,
    "TEXT_TOO_LONG": ErrorCategory.INVALID_REQUEST,
    "CONTENT_FILTER_BLOCKED": ErrorCategory.APPLICATION,
    "UNAUTHORIZED": ErrorCategory.AUTHENTICATION,
    "RATE_LIMIT": ErrorCategory.RATE_LIMIT,
    "CONCURRENCY_LIMIT": ErrorCategory.RATE_LIMIT,
    "QUOTA_EXCEEDED": ErrorCategory.QUOTA,
    sn.CONNECTION_LOST: ErrorCategory.CONNECTIVITY,
}


@dataclass
class WavesTTSSettings(TTSSettings):
    """Runtime-updatable settings of :class:`WavesTTSService`.

    Change any of them mid-session with ``TTSUpdateSettingsFrame``; no
    reconnect is needed. A change of voice, model, language or speed in the
    middle of a reply moves the rest of the reply to a new server context.

    Parameters:
        speed: Speaking rate, 0.5 to 2.0. None leaves the server default (1.0).
        math_notation: Read digit-flanked operators as words ("2 + 2").
        number_pronunciation_language: Language used to read numbers.
        content_filter: ``"reject"`` or ``"flag"`` profanity handling, or None.
    """

    speed: float | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    math_notation: bool | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    number_pronunciation_language: str | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    content_filter: str | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)


def _given(value: Any) -> Any:
    return value if is_given(value) else None


class WavesTTSService(ReportedFailuresAdapter, TTSService):
    """Smallest.ai Waves text-to-speech over one persistent WebSocket.

    Text from the LLM is aggregated into sentences (or streamed as tokens) and
    sent as fragments of one continuation context per turn; audio comes back on
    the same socket and is pushed as ``TTSAudioRawFrame``.

    Barge-in costs no reconnect: an ``InterruptionFrame`` cancels the reply on
    the server and marks it so that none of its audio is pushed again, then
    passes on at once. A dropped connection is reopened with backoff and every
    sentence not yet fully received is sent again.

    Event handlers:
        on_connected: A connection to Waves opened.
        on_disconnected: A connection closed (``tts, code, reason``).
        on_connection_error: Opening a connection failed (``tts, error``).

    Example::

        tts = WavesTTSService(
            api_key=os.environ["WAVES_API_KEY"],
            settings=WavesTTSService.Settings(voice="avery", speed=1.1),
        )
    """

    Settings = WavesTTSSettings
    _settings: WavesTTSSettings

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        sample_rate: int | None = None,
        settings: WavesTTSSettings | None = None,
        text_aggregation_mode: TextAggregationMode | None = None,
        max_buffer_delay_ms: int | None = None,
        first_clause: FirstClause | None = FIRST_CLAUSE,
        word_timestamps: bool = True,
        idle_timeout_s: int = 60,
        turn_end_guard_s: float = 0.25,
        standby_connection: bool = True,
        stall_timeout_s: float = 4.0,
        open_timeout_s: float = 10.0,
        reconnect_backoff_s: tuple[float, float] = (0.1, 5.0),
        server_traits: ServerTraits | None = None,
        **kwargs: Any,
    ):
        """Create the service.

        Args:
            api_key: Smallest.ai API key. Never logged.
            base_url: ``wss://`` origin of the API. ``ws://`` is accepted only
                for a server on this machine, so a key never travels in clear.
            sample_rate: Output rate, 8000 to 192000 Hz; None takes the
                pipeline's output rate. Waves produces 8000, 16000, 24000 and
                44100 Hz; any other rate is asked for at the nearest offered
                rate above it (else 44100) and resampled as it streams.
            settings: Voice, model, language, speed and the rest.
            text_aggregation_mode: ``SENTENCE`` (default) sends whole sentences;
                ``TOKEN`` streams LLM tokens and lets the server gather them.
            max_buffer_delay_ms: How long the server may hold text waiting for a
                sentence end. None picks per mode: 0 for sentences (already
                whole), 500 for tokens.
            first_clause: In sentence mode, send the first sentence of each
                turn in pieces (its first clause as soon as it is complete,
                then more before that audio runs out) instead of waiting for
                the LLM to finish it; the thresholds are
                :class:`~pipecat_waves.first_clause.FirstClause`'s. None sends
                whole sentences only.
            word_timestamps: Ask for word timings and emit word-level
                ``TTSTextFrame``s in step with the audio. Voices without timings
                fall back to the whole sentence text.
            idle_timeout_s: Server idle timeout requested with ``?timeout=``;
                keep-alive pings go out only when nothing else was sent for a
                third of it.
            turn_end_guard_s: After the server's last ``complete``, how long to
                wait when segment counts alone do not prove the reply is over.
            standby_connection: Keep a warm spare socket when the server does
                not echo request ids, so a barge-in never makes the next reply
                wait for a handshake.
            stall_timeout_s: A connection that sends nothing for half this
                long while audio is awaited is probed with a ping; if the pong
                does not come within the other half, the connection is dropped
                and its unfinished text is sent again on a new one.
            open_timeout_s: Limit on one connection attempt.
            reconnect_backoff_s: First and largest wait between attempts.
            server_traits: What is already known of the server, so it need not
                be learned again: ``ServerTraits.from_file("probe.json")`` for
                what ``pipecat-waves probe --json`` recorded, or an earlier
                service's :attr:`server_traits`. A known refusal of
                ``complete_backoff_ms`` beside a context means it is never
                sent; a known idle timeout that ``?timeout=`` does not change
                (``honours_timeout_query=False``) sets the keep-alive when it
                is shorter than ``idle_timeout_s``. A wrong trait costs what
                learning costs, never a word.
            **kwargs: Passed to Pipecat's ``TTSService``.

        Raises:
            ValueError: An unusable ``api_key`` (the message never repeats
                it); an unsupported ``sample_rate``, model, speed or voice id;
                a plain ``ws://`` URL to a remote host, or one that already
                holds the endpoint path; ``idle_timeout_s`` above 180.
        """
        api_key = clean_api_key(api_key)
        if sample_rate is not None:
            wire_rate_for(sample_rate)  # raises ValueError for a rate that makes no sense
        default_settings = WavesTTSSettings(
            model="lightning_v3.1",
            voice="avery",
            language=Language.EN,
            speed=None,
            math_notation=None,
            number_pronunciation_language=None,
            content_filter=None,
        )
        if settings is not None:
            default_settings.apply_update(settings)
        problem = settings_problem(default_settings)
        if problem:
            raise ValueError(problem)
        self._url = live_url(base_url, idle_timeout_s)
        mode = text_aggregation_mode or TextAggregationMode.SENTENCE
        # The server joins a context's fragments exactly as sent, so sentences
        # need the space between them (the aggregator trims it).
        kwargs.setdefault("append_trailing_space", True)
        super().__init__(
            text_aggregation_mode=mode,
            push_start_frame=True,
            push_stop_frames=True,
            push_text_frames=not word_timestamps,
            # The end of a reply comes from evidence (see WavesSession): a reply
            # merely queued behind others must not be cut short by a clock.
            # This is only a safety net for a server that goes quiet for good.
            stop_frame_timeout_s=30.0,
            sample_rate=sample_rate,
            settings=default_settings,
            **kwargs,
        )
        if mode == TextAggregationMode.SENTENCE and first_clause is not None:
            # Pipecat takes no aggregator argument: its sentence aggregator is
            # swapped for one that also cuts the first sentence (see pipecat_adapter).
            rule = first_clause
            install_text_aggregator(
                self,
                lambda pipecats: FirstClauseAggregator(
                    rule, aggregation_type=TextType.SENTENCE, language=pipecats.language
                ),
            )
        self._api_key = api_key
        self._word_timestamps = word_timestamps
        self._open_timeout_s = open_timeout_s
        self._backoff = reconnect_backoff_s
        self._buffer_delay_ms = (
            max_buffer_delay_ms
            if max_buffer_delay_ms is not None
            else (
                TOKEN_MODE_BUFFER_DELAY_MS
                if mode == TextAggregationMode.TOKEN
                else SENTENCE_MODE_BUFFER_DELAY_MS
            )
        )
        traits = server_traits or ServerTraits()
        self._session_config = sn.SessionConfig(
            tail_guard_s=turn_end_guard_s,
            # A server that closes idle sockets sooner than asked is pinged
            # for what it does, not for what the URL asks.
            keepalive_interval_s=max(1.0, traits.idle_timeout_for(idle_timeout_s) / 3),
            stall_probe_s=stall_timeout_s / 2,
            pong_timeout_s=stall_timeout_s / 2,
            spare_connections=1 if standby_connection else 0,
        )
        self._session = sn.WavesSession(self._session_config, traits)
        self._lanes: dict[int, LiveSocket] = {}
        self._lane_ids = itertools.count(1)
        self._connect_tasks: set[asyncio.Task] = set()
        self._timer_task: asyncio.Task | None = None
        self._running = False
        self._fatal_error: str | None = None
        self._failed_contexts: set[str] = set()
        self._spoken_voice: str | None = None  # the last voice audio came back for
        self._quick_failures = 0
        self._refusal_streak = 0
        self._timer_wakes_at: float | None = None
        self._gave_up = False
        self._outage_reported = False
        self._outage_since: float | None = None
        self._outage_reporter: asyncio.Task | None = None
        # Rate asked of Waves, and a resampler per reply when it differs from ours.
        self._wire_rate = 0
        self._resamplers: dict[str, StreamResampler] = {}
        self._connected_once = False

    def __repr__(self) -> str:
        # The key is deliberately absent.
        return f"<{type(self).__name__} {self._url}>"

    @property
    def server_traits(self) -> ServerTraits:
        """What the service knows of the server now: what it was given, and what it learned.

        Hand it to the next service for the same account (the next call of a
        bot, say) so that one starts without relearning.
        """
        return self._session.traits()

    def can_generate_metrics(self) -> bool:
        """Whether TTFB and usage metrics are produced: they are."""
        return True

    @property
    def supports_processing_metrics(self) -> bool:
        """No: audio arrives on a receive task, so ``run_tts`` times only a send."""
        return False

    def language_to_service_language(self, language: Language) -> str | None:
        """Convert a Pipecat ``Language`` to a Waves code."""
        return language_to_waves_language(language)

    # ------------------------------------------------------------- lifecycle

    async def setup(self, setup: FrameProcessorSetup):  # type: ignore[override]
        """Check the output rate and open the connection, warm before the first word."""
        await super().setup(setup)
        try:
            self._wire_rate = wire_rate_for(self.sample_rate)
        except ValueError as e:
            self._fatal_error = str(e)
            return
        self._session_config.sample_rate = self._wire_rate
        self._running = True
        self._act_on_control(self._session.start())

    async def start(self, frame: StartFrame):
        """Start the service; report a configuration error found in setup."""
        await super().start(frame)
        if self._fatal_error:
            await self.push_error(
                self._fatal_error,
                category=ErrorCategory.INVALID_REQUEST,
                force_treat_as_permanent=True,
            )
            return
        if self._timer_task is None:
            self._timer_task = self.create_task(self._timer_loop(), name="waves-timer")

    async def stop(self, frame: EndFrame):
        """Finish playing, then close every connection."""
        await super().stop(frame)
        await self._shutdown()

    async def cancel(self, frame: CancelFrame):
        """Stop at once and close every connection."""
        await super().cancel(frame)
        await self._shutdown()

    async def cleanup(self):
        """Release sockets and tasks."""
        await super().cleanup()
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._running = False
        if self._timer_task is not None:
            await self.cancel_task(self._timer_task)
            self._timer_task = None
        for task in list(self._connect_tasks):
            task.cancel()
        await asyncio.gather(*self._connect_tasks, return_exceptions=True)
        self._connect_tasks.clear()
        self._resamplers.clear()
        lanes = list(self._lanes.values())
        self._lanes.clear()
        await asyncio.gather(*(lane.shutdown() for lane in lanes), return_exceptions=True)

    # ------------------------------------------------------------------ text

    async def run_tts(self, text: str, context_id: str):
        """Send one fragment of ``context_id``; its audio arrives on the receive task."""
        await self.start_tts_usage_metrics(text)
        await self._act(
            self._session.send_text(
                context_id,
                text,
                self._voice_params(),
                time.monotonic(),
                max_buffer_delay_ms=self._buffer_delay_ms,
            )
        )
        self._wake_timer()
        yield None

    async def flush_audio(self, context_id: str | None = None):
        """End the reply: the server speaks whatever it still holds, then it is over."""
        context_id = context_id or self.get_active_audio_context_id()
        if not context_id:
            return
        if self._session.is_live(context_id):
            await self._act(self._session.close_context(context_id, time.monotonic()))
            self._wake_timer()
        elif self.audio_context_available(context_id):
            # Nothing of this reply reached the server (no text, or the service
            # could not work): end its audio context now instead of after a timeout.
            await self.remove_audio_context(context_id)

    def _voice_params(self) -> VoiceParams:
        s = self._settings
        return VoiceParams(
            voice_id=str(s.voice),
            model=str(s.model),
            language=_given(s.language),
            sample_rate=self._wire_rate,
            speed=_given(s.speed),
            word_timestamps=self._word_timestamps,
            math_notation=_given(s.math_notation),
            number_pronunciation_language=_given(s.number_pronunciation_language),
            content_filter=_given(s.content_filter),
        )

    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:  # type: ignore[override]
        """Apply a settings change. It takes effect with the next fragment, no reconnect.

        A change that cannot work (an unknown model, a speed out of range, a
        malformed voice id) is refused whole with one ErrorFrame naming it;
        the service goes on with the settings it had.
        """
        candidate = copy.deepcopy(self._settings)
        candidate.apply_update(copy.deepcopy(delta))  # type: ignore[arg-type]
        problem = settings_problem(candidate)
        if problem:
            # APPLICATION, not INVALID_REQUEST: the application sent a bad
            # frame, but the service still works (a permanent category would
            # mark it unusable).
            await self.push_error(
                f"Settings update refused, keeping the previous settings: {problem}",
                category=ErrorCategory.APPLICATION,
            )
            return {}
        return await super()._update_settings(delta)

    async def push_error_frame(self, error: ErrorFrame, force_treat_as_permanent: bool = False):
        """Push an error upstream, never with a key in its text."""
        error.error = scrub(error.error)
        await super().push_error_frame(error, force_treat_as_permanent)

    # -------------------------------------------------------------- barge-in

    # On an InterruptionFrame Pipecat stops its playback task, then calls
    # on_audio_context_interrupted for each interruptible reply while its audio
    # context is still registered, then drops those contexts. Audio that
    # arrives in between is queued into a context that is about to be dropped
    # and is never played; after the hook the session drops it itself.
    # Uninterruptible replies never reach the hook and play on.

    async def on_audio_context_interrupted(self, context_id: str):
        """Barge-in: cancel the reply on the server; none of its audio is pushed again.

        Only queues the cancel, so the ``InterruptionFrame`` is passed on
        without waiting for the network. The next reply's connection is
        settled once every interrupted reply is cancelled (``process_frame``).
        """
        await super().on_audio_context_interrupted(context_id)
        self._resamplers.pop(context_id, None)
        # A dropped context never reaches Pipecat's audio-outcome hook.
        self._failed_contexts.discard(context_id)
        self._act_on_control(
            self._session.interrupt([context_id], time.monotonic(), dispatch=False)
        )

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Process a frame as Pipecat does; after a barge-in, settle the connections."""
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._after_barge_in()

    def _after_barge_in(self) -> None:
        """Cancel replies no audio context plays any more, and hand out the warm spare."""
        now = time.monotonic()
        playing = self.get_active_audio_context_id()
        unplayable = [
            cid
            for cid in self._session.live_contexts()
            if cid != playing and not self.audio_context_available(cid)
        ]
        for cid in unplayable:
            self._resamplers.pop(cid, None)
        self._failed_contexts = {
            cid for cid in self._failed_contexts if self.audio_context_available(cid)
        }
        self._act_on_control(self._session.interrupt(unplayable, now, dispatch=False))
        self._act_on_control(self._session.dispatch(now))
        self._wake_timer()

    # ----------------------------------------------------------- connections

    def _open_lane(self, reason: str) -> None:
        if not self._running:
            return
        logger.debug(f"{self}: opening connection ({reason})")
        task = asyncio.get_running_loop().create_task(
            self._connect_with_backoff(), name="waves-connect"
        )
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _connect_with_backoff(self) -> None:
        attempt = 0
        while self._running:
            attempt += 1
            started = time.monotonic()
            try:
                websocket = await open_socket(
                    self._url,
                    self._api_key,
                    extra_headers={"X-Source": "pipecat-waves"},
                    open_timeout_s=self._open_timeout_s,
                )
            except WavesConnectError as e:
                await self._call_event_handler("on_connection_error", str(e))
                if e.permanent:
                    self._session.connection_failed_to_open()
                    category = (
                        ErrorCategory.AUTHENTICATION
                        if e.auth_rejected
                        else ErrorCategory.INVALID_REQUEST
                    )
                    await self._give_up(str(e), category)
                    return
                if self._lanes and e.refused:
                    # Working already: the server (or account) allows no more
                    # sockets. Work with the ones open; that is not a failure.
                    logger.info(f"{self}: {e}; going on with {len(self._lanes)} connection(s)")
                    self._session.connection_failed_to_open()
                    self._session.connection_limit_reached(len(self._lanes), time.monotonic())
                    return
                await self._note_outage(e)
                await asyncio.sleep(e.retry_after_s or backoff_s(attempt, *self._backoff))
                continue
            lane_id = next(self._lane_ids)
            opened_in = f"{1000 * (time.monotonic() - started):.0f} ms"
            if not self._connected_once:
                self._connected_once = True  # said once; later sockets are detail
                logger.info(f"{self}: connected in {opened_in}")
            logger.debug(f"{self}: connection {lane_id} open in {opened_in}")
            self._lanes[lane_id] = LiveSocket(
                lane_id, websocket, LiveSocketHandlers(self._on_lane_message, self._on_lane_closed)
            )
            await self._call_event_handler("on_connected")
            await self._act(self._session.connection_opened(lane_id, time.monotonic()))
            self._wake_timer()
            return

    async def _note_outage(self, error: WavesConnectError) -> None:
        """No connection can be opened: log it once, and report it if it lasts."""
        now = time.monotonic()
        # The main and the spare connection retry side by side: only one of
        # them (the first to fail) logs, so each attempt is one log line.
        me = asyncio.current_task()
        reporter = self._outage_reporter
        if reporter is None or reporter.done():
            self._outage_reporter = reporter = me
        if self._outage_since is None:
            self._outage_since = now
            logger.warning(f"{self}: {error}")
        elif reporter is me:
            logger.debug(f"{self}: {error}")
        if self._lanes or self._outage_reported:
            return
        if now - self._outage_since >= OUTAGE_REPORT_S:
            # A user must act on an outage that retries do not fix; a brief one
            # that a retry repairs is only a log line.
            self._outage_reported = True
            await self.push_error(
                f"{error} No connection for {now - self._outage_since:.0f} s; still retrying.",
                category=ErrorCategory.RATE_LIMIT if error.refused else ErrorCategory.CONNECTIVITY,
            )

    async def _on_lane_message(self, lane_id: int, message: str | bytes) -> None:
        if self._outage_since is not None:
            # A connection that answers ends an outage (one that opens and is
            # turned away at once does not).
            logger.info(f"{self}: reconnected after {time.monotonic() - self._outage_since:.1f} s")
            self._outage_since = None
            self._outage_reported = False
        try:
            event = rs.parse_message(message)
        except rs.ResponseError as e:
            logger.warning(f"{self}: ignoring a malformed server message: {e}")
            return
        if isinstance(event, rs.Unrecognized):
            logger.debug(f"{self}: ignoring unrecognized server message {event.raw!r:.200}")
            return
        await self._act(self._session.receive(lane_id, event, time.monotonic()))
        # Any frame can bring a deadline forward: the last word of a reply
        # matched, say, turns a long guard into the short tail. Re-arming is
        # cheap when it does not (the timer is left alone).
        self._wake_timer()

    async def _on_lane_closed(self, lane_id: int, code: int | None, reason: str) -> None:
        lane = self._lanes.pop(lane_id, None)
        if lane is None:
            return
        retired = self._session.connection_state(lane_id) is sn.ConnState.RETIRED
        refused = is_refusal_close(code) and lane.messages_received == 0
        if not retired and self._running:
            await self._judge_unexpected_close(lane, code, reason)
            if refused and self._lanes:
                # Turned away while others work: the account allows no more sockets.
                self._session.connection_limit_reached(len(self._lanes), time.monotonic())
        await self._call_event_handler("on_disconnected")
        await self._act(self._session.connection_lost(lane_id, time.monotonic(), refused=refused))
        self._wake_timer()

    async def _judge_unexpected_close(
        self, lane: LiveSocket, code: int | None, reason: str
    ) -> None:
        """Decide what a connection closed by the server means: routine, back off, or give up.

        An idle close, or a drop mid-reply that a reconnect repairs, is routine
        (the session logs it and resends what was not spoken). Only a close
        that says the key is wrong, or a server that hangs up on every new
        connection at once, is reported: no retry can fix those.
        """
        closed = f"code {code}, {reason or 'no reason given'}"
        if _mentions_auth(reason) or code in _AUTH_CLOSE_CODES:
            await self._give_up(
                f"Waves closed the connection because of the API key ({closed}). Check the "
                "api_key you passed (or WAVES_API_KEY).",
                ErrorCategory.AUTHENTICATION,
            )
            return
        short_lived = time.monotonic() - lane.opened_at < 2.0 and not lane.messages_received
        if is_refusal_close(code) and short_lived:
            if self._lanes:
                # Refused while other connections work: a socket limit, not a failure.
                logger.info(f"{self}: Waves turned connection {lane.id} away ({closed})")
                return
            await self._note_outage(
                WavesConnectError(
                    f"Waves turned the connection away ({closed}): the account's concurrency "
                    "limit is reached. Retrying with backoff; run fewer sessions at once or "
                    "raise the account's concurrency.",
                    refused=True,
                )
            )
            self._refusal_streak += 1
            await asyncio.sleep(backoff_s(self._refusal_streak + 1, *self._backoff))
            return
        self._refusal_streak = 0
        self._quick_failures = self._quick_failures + 1 if short_lived else 0
        if self._quick_failures >= _QUICK_FAILURES_TO_GIVE_UP:
            await self._give_up(
                f"Waves closed {self._quick_failures} connections in a row right after opening "
                f"them (last: {closed}). Check the api_key, base_url and the account's "
                "concurrency limit.",
                ErrorCategory.CONNECTIVITY,
            )
            return
        if short_lived:
            # Closed at once: wait before the next attempt instead of hammering.
            logger.warning(f"{self}: Waves closed connection {lane.id} at once ({closed})")
            await asyncio.sleep(backoff_s(self._quick_failures + 1, *self._backoff))
        else:
            logger.debug(f"{self}: Waves closed connection {lane.id} ({closed})")

    async def _give_up(self, message: str, category: ErrorCategory) -> None:
        """Report a failure no retry can fix, once, and stop reconnecting."""
        if self._gave_up:
            return
        self._gave_up = True
        self._running = False
        await self.push_error(message, category=category, force_treat_as_permanent=True)

    async def _timer_loop(self) -> None:
        # Asleep until the session's next deadline (a turn-end guard, a stall
        # probe, a keep-alive), never on a fixed tick: a tick costs CPU on every
        # session all the time. Events that bring a deadline forward wake it.
        while True:
            try:
                now = time.monotonic()
                delay = min(max(self._session.next_deadline(now) - now, 0.0), MAX_TIMER_SLEEP_S)
                self._timer_wakes_at = now + delay
                await asyncio.sleep(delay + TIMER_SLACK_S)
                self._timer_wakes_at = None
                await self._act(self._session.poll(time.monotonic()))
            except Exception as e:
                # Turn ends and keep-alives hang on this loop: a bug must cost
                # one tick, not every later reply. Logged, then on again.
                self._timer_wakes_at = None
                logger.opt(exception=e).error(f"{self}: session timer failed; continuing")
                await asyncio.sleep(TIMER_SLACK_S)

    def _wake_timer(self) -> None:
        """Re-arm the timer if the session now has a deadline before its wake-up."""
        wakes_at = self._timer_wakes_at
        if wakes_at is None or self._timer_task is None:
            return  # not started, or busy acting: it asks again when done
        if self._session.next_deadline(time.monotonic()) < wakes_at:
            self._timer_wakes_at = None
            self._timer_task.cancel()
            self._timer_task = self.create_task(self._timer_loop(), name="waves-timer")

    # --------------------------------------------------------------- outputs

    def _act_on_control(self, outputs: list[sn.Output]) -> None:
        """Carry out the outputs that need no await (sends, closes, opens, logs)."""
        for output in outputs:
            if isinstance(output, sn.Send):
                lane = self._lanes.get(output.conn)
                if lane is not None:
                    lane.send(output.message)
            elif isinstance(output, sn.CloseConnection):
                lane = self._lanes.get(output.conn)
                if lane is not None:
                    logger.debug(f"{self}: closing connection {output.conn} ({output.reason})")
                    lane.close()
            elif isinstance(output, sn.AbortConnection):
                lane = self._lanes.get(output.conn)
                if lane is not None:
                    logger.warning(f"{self}: dropping connection {output.conn} ({output.reason})")
                    lane.abort()
            elif isinstance(output, sn.OpenConnection):
                self._open_lane(output.reason)
            elif isinstance(output, sn.Notice):
                logger.log(output.level.upper(), f"{self}: {output.message}")
            elif isinstance(output, sn.ContextRetrying):
                when = (
                    "when our previous reply frees its slot"
                    if output.delay_s is None
                    else f"in {output.delay_s:.2f} s"
                )
                logger.info(f"{self}: Waves refused a reply ({output.error.message}); retry {when}")

    async def _act(self, outputs: list[sn.Output]) -> None:
        """Carry out what the session asked for, in order."""
        for output in outputs:
            if isinstance(output, sn.AudioOut):
                self._spoken_voice = self._session.voice_of(output.context_id) or self._spoken_voice
                await self._push_audio(output)
            elif isinstance(output, sn.WordOut):
                await self.add_word_timestamps([(output.word, output.time_s)], output.context_id)
            elif isinstance(output, sn.ContextFinished):
                await self._flush_resampler(output.context_id)
                if self.audio_context_available(output.context_id):
                    await self.remove_audio_context(output.context_id)
            elif isinstance(output, sn.ContextFailed):
                await self._fail_context(output)
            elif isinstance(output, sn.UnattributedError):
                await self._on_unattributed_error(output)
            else:
                self._act_on_control([output])

    async def _on_unattributed_error(self, output: sn.UnattributedError) -> None:
        """An error that failed no reply: fatal only if it is about the key."""
        category = _category(output.error)
        if category is ErrorCategory.AUTHENTICATION:
            await self._give_up(
                f"Waves error: {output.error.message}. Check the api_key (or WAVES_API_KEY).",
                category,
            )
        else:
            logger.warning(
                f"{self}: Waves reported an error on connection {output.conn} that no reply "
                f"waits on: {output.error.message}"
            )

    async def _push_audio(self, output: sn.AudioOut) -> None:
        # Only a context Pipecat still plays may take audio: an interrupted
        # one is gone, and must not be brought back by late audio.
        if not self.audio_context_available(output.context_id):
            self._resamplers.pop(output.context_id, None)
            return
        pcm = output.pcm
        if self._wire_rate != self.sample_rate:
            resampler = self._resamplers.get(output.context_id)
            if resampler is None:
                resampler = StreamResampler(self._wire_rate, self.sample_rate)
                self._resamplers[output.context_id] = resampler
            pcm = resampler.feed(pcm)
        await self._append_audio(output.context_id, pcm)

    async def _append_audio(self, context_id: str, pcm: bytes) -> None:
        if not pcm:
            return  # the resampler is still filling its window
        frame = TTSAudioRawFrame(
            audio=pcm, sample_rate=self.sample_rate, num_channels=1, context_id=context_id
        )
        await self.append_to_audio_context(context_id, frame)

    async def _flush_resampler(self, context_id: str) -> None:
        """A reply's audio is complete: push what the resampler still holds."""
        resampler = self._resamplers.pop(context_id, None)
        if resampler is not None and self.audio_context_available(context_id):
            await self._append_audio(context_id, resampler.flush())

    def _claim_reported_failure(self, context_id: str) -> bool:
        # A reply the server refused was already reported once, with its cause;
        # Pipecat's generic "completed with no audio" would report it twice.
        if context_id in self._failed_contexts:
            self._failed_contexts.discard(context_id)
            return True
        return False

    def _keep_working_voice(self, error: rs.ServerError) -> str | None:
        """After a voice the server does not know, go back to the last one that spoke.

        A mistyped voice in a settings update would otherwise fail every later
        reply; this way it fails one, reported once, and the service keeps
        speaking. Returns the voice gone back to, if any.
        """
        spoken = self._spoken_voice
        if "voice" not in f"{error.code or ''} {error.message}".lower():
            return None
        if spoken is None or self._settings.voice == spoken:
            return None
        logger.warning(f"{self}: voice {self._settings.voice!r} refused; back to {spoken!r}")
        self._settings.voice = spoken
        return spoken

    async def _fail_context(self, output: sn.ContextFailed) -> None:
        error = output.error
        self._resamplers.pop(output.context_id, None)
        if _category(error) is ErrorCategory.AUTHENTICATION:
            await self._give_up(
                f"Waves error: {error.message}. Check the api_key (or WAVES_API_KEY).",
                ErrorCategory.AUTHENTICATION,
            )
            return
        message = scrub(f"Waves could not synthesize this reply: {error.message}")
        if error.code:
            message += f" ({error.code})"
        message += _fix_for(error)
        category = _category(error)
        kept = self._keep_working_voice(error)
        if kept:
            message += f" Going on with voice {kept!r}, the last one that spoke."
            # The service recovered: a permanent category would mark it unusable.
            category = ErrorCategory.APPLICATION
        frame = ErrorFrame(error=message, category=category)
        if self.audio_context_available(output.context_id):
            # Only a context Pipecat still plays reaches the audio-outcome hook.
            self._failed_contexts.add(output.context_id)
            # Through the audio queue, so the error and the TTSStoppedFrame that
            # follows come out in order with the audio already received.
            await self.append_to_audio_context(output.context_id, frame)
            await self.remove_audio_context(output.context_id)
        else:
            await self.push_error_frame(frame)


#: Connections closed right after opening, in a row, before the service gives up.
_QUICK_FAILURES_TO_GIVE_UP = 6

#: Close codes some servers use for a rejected credential.
_AUTH_CLOSE_CODES = frozenset({4001, 4003, 4401, 4403})


def _mentions_auth(text: str) -> bool:
    lowered = text.lower()
    return any(
        word in lowered
        for word in ("unauthori", "api key", "api_key", "apikey", "authenticat", "forbidden")
    )


def _category(error: rs.ServerError) -> ErrorCategory:
    if error.code and error.code.upper() in _ERROR_CATEGORIES:
        return _ERROR_CATEGORIES[error.code.upper()]
    if _mentions_auth(error.message) or (error.code or "") in ("401", "403"):
        return ErrorCategory.AUTHENTICATION
    if sn.is_rate_limit(error):
        return ErrorCategory.RATE_LIMIT
    if "voice" in error.message.lower():
        return ErrorCategory.INVALID_REQUEST
    return ErrorCategory.SERVER


def _fix_for(error: rs.ServerError) -> str:
    """A sentence telling the user what to change, where the error says enough."""
    text = f"{error.code or ''} {error.message}".lower()
    if "voice" in text:
        return (
            ". Pick a voice id from `pipecat-waves voices` (GET "
            "/waves/v1/lightning-v3.1/get_voices) and set it with Settings(voice=...)."
        )
    if "language" in text:
        return ". Set a language Waves supports with Settings(language=...)."
    if "content_filter" in text:
        return ". The text was blocked by the content filter; see Settings(content_filter=...)."
    return ""
