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

from pipecat_waves.credentials import clean_api_key, scrub
from pipecat_waves.errors import category_of as _category
from pipecat_waves.errors import fix_for as _fix_for
from pipecat_waves.errors import refused_model as _refused_model
from pipecat_waves.log import logger
from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol import reconnect as rc
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol.constants import DEFAULT_BASE_URL
from pipecat_waves.protocol.requests import VoiceParams
from pipecat_waves.protocol.traits import ServerTraits
from pipecat_waves.service.connection import (
    LiveSocket,
    LiveSocketHandlers,
    WavesConnectError,
    live_url,
    open_socket,
)
from pipecat_waves.service.first_clause import FirstClause, FirstClauseAggregator
from pipecat_waves.service.language import language_to_waves_language
from pipecat_waves.service.pipecat_adapter import ReportedFailuresAdapter, install_text_aggregator
from pipecat_waves.service.resample import StreamResampler, wire_rate_for
from pipecat_waves.service.settings_check import known_models, settings_problem, unknown_model
from pipecat_waves.service.tracing import traced_replies

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

TIMER_SLACK_S = 0.005

#: How long Waves may be unreachable before the service reports itself
#: unusable (so a ServiceSwitcher fails over). A dropped socket is replaced in
#: about one handshake (a few hundred ms to the cloud API) and a retry or four
#: of the backoff fit in this; a bot whose turns come every few seconds loses
#: at most the turn under way when the verdict comes.
DEFAULT_FAILOVER_AFTER_S = 2.0


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
        pronunciation_dicts: Ids of pronunciation dictionaries to speak with
            (``pipecat-waves dicts list`` shows them), or None. The live
            socket does not declare the field: it is sent there only while the
            server takes it, and the first refusal stops it for the session,
            with one warning that the dictionaries are not applied.
    """

    speed: float | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    math_notation: bool | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    number_pronunciation_language: str | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    content_filter: str | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)
    pronunciation_dicts: list[str] | NotGiven | None = field(default_factory=lambda: NOT_GIVEN)


def initial_settings(given: WavesTTSSettings | None) -> WavesTTSSettings:
    """The defaults with ``given`` applied, checked: what both services start from.

    Raises:
        ValueError: A setting that cannot work, named.
    """
    settings = WavesTTSSettings(
        model="lightning_v3.1",
        voice="avery",
        language=Language.EN,
        speed=None,
        math_notation=None,
        number_pronunciation_language=None,
        content_filter=None,
        pronunciation_dicts=None,
    )
    if given is not None:
        settings.apply_update(given)
    problem = settings_problem(settings)
    if problem:
        raise ValueError(problem)
    return settings


def _given(value: Any) -> Any:
    return value if is_given(value) else None


@traced_replies
class WavesTTSService(ReportedFailuresAdapter, TTSService):
    """Smallest.ai Waves text-to-speech over one persistent WebSocket.

    Text from the LLM is aggregated into sentences (or streamed as tokens) and
    sent as fragments of one continuation context per turn; audio comes back on
    the same socket and is pushed as ``TTSAudioRawFrame``.

    Barge-in costs no reconnect: an ``InterruptionFrame`` cancels the reply on
    the server and marks it so that none of its audio is pushed again, then
    passes on at once. A dropped connection is reopened with backoff and every
    sentence not yet fully received is sent again.

    When Waves cannot be reached for ``failover_after_s``, the service reports
    one ``ErrorFrame`` that leaves it unusable (``is_usable`` is False), so a
    ``ServiceSwitcher`` with ``ServiceSwitcherStrategyFailover`` moves to its
    backup. It keeps reconnecting in the background and becomes usable again
    (``on_usable_changed`` fires with True) once a connection works.

    Event handlers (Pipecat's ``TTSService`` signatures):
        on_connected(service): The service has a connection to Waves, for
            the first time or again after losing them all.
        on_disconnected(service): The service has lost every connection and
            could not replace it at once (or it stopped). Sockets retired
            after a barge-in, spares, and sockets replaced after an idle close
            fire nothing.
        on_connection_error(service, error): An attempt to connect failed;
            ``error`` says why (never with the key).

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
        failover_after_s: float = DEFAULT_FAILOVER_AFTER_S,
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
                :class:`~pipecat_waves.service.first_clause.FirstClause`'s. None sends
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
            failover_after_s: How long Waves may be unreachable (every attempt
                refused, reset, timed out or answered 5xx, or every connection
                closed at once) before the service reports one error and marks
                itself unusable, so a ``ServiceSwitcher`` fails over. A blip
                that a retry repairs sooner is only logged. Replies waiting for
                a connection then are dropped with that one error rather than
                spoken late.
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
                it); an unsupported ``sample_rate`` or speed, a malformed voice
                id, no model name (a model this version does not know is sent
                with one warning: Waves decides);
                a plain ``ws://`` URL to a remote host, or one that already
                holds the endpoint path; ``idle_timeout_s`` above 180;
                ``failover_after_s`` not above 0.
        """
        api_key = clean_api_key(api_key)
        if sample_rate is not None:
            wire_rate_for(sample_rate)  # raises ValueError for a rate that makes no sense
        default_settings = initial_settings(settings)
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
        self._policy = rc.ReconnectPolicy(
            rc.ReconnectConfig(
                first_backoff_s=reconnect_backoff_s[0],
                largest_backoff_s=reconnect_backoff_s[1],
                failover_after_s=failover_after_s,
            )
        )
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
        self._turn_context: str | None = None  # the reply begun last (on_turn_context_created)
        self._after_interruption = False  # a barge-in came, and no reply has begun since
        self._kept_at_barge_in: set[str] = set()  # uninterruptible contexts it left playing
        self._spoken_voice: str | None = None  # the last voice audio came back for
        self._spoken_model: str | None = None  # the last model audio came back for
        self._models_warned: set[str] = set()
        self._warn_if_unknown_model(default_settings.model)
        self._timer_wakes_at: float | None = None
        self._last_failure = ""  # why the last connection attempt or connection failed
        self._retrying: asyncio.Task | None = None  # the connect task retrying an outage
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
        await self._on_policy(self._policy.shutdown())
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

    async def on_turn_context_created(self, context_id: str):
        """A reply (an LLM turn or a ``TTSSpeakFrame``) begins: its text is spoken."""
        await super().on_turn_context_created(context_id)
        self._turn_context = context_id
        self._after_interruption = False

    async def run_tts(self, text: str, context_id: str):
        """Send one fragment of ``context_id``; its audio arrives on the receive task."""
        if self._after_interruption and context_id not in self._speaking_contexts():
            await self._drop_leftover(context_id, text)
            yield None
            return
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

    def _speaking_contexts(self) -> set[str]:
        """Contexts whose text is spoken after a barge-in: the new reply's, and survivors."""
        kept = self._kept_at_barge_in
        return kept | {self._turn_context} if self._turn_context else kept

    async def _drop_leftover(self, context_id: str, text: str) -> None:
        """Text of an interrupted reply that reached the service after the barge-in.

        The tail of an LLM stream can be processed after the
        ``InterruptionFrame`` overtook it. Pipecat gives it a context of its
        own, outside any turn, which no end of turn would ever close: spoken,
        it would be a piece of the reply the user talked over; kept open, it
        would hold the next reply back. It is dropped, and its context ended.
        """
        logger.debug(f"{self}: dropping text of the interrupted reply [{text}]")
        if self.audio_context_available(context_id):
            # Ended without audio on purpose: not one of Pipecat's silent replies.
            self._failed_contexts.add(context_id)
            await self.remove_audio_context(context_id)

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
            pronunciation_dicts=tuple(_given(s.pronunciation_dicts) or ()) or None,
        )

    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:  # type: ignore[override]
        """Apply a settings change. It takes effect with the next fragment, no reconnect.

        A change that cannot work (a speed out of range, a malformed voice
        id) is refused whole with one ErrorFrame naming it; the service goes
        on with the settings it had. A model this version does not know is
        sent, with one warning: the server decides.
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
        self._warn_if_unknown_model(candidate.model)
        return await super()._update_settings(delta)

    def _warn_if_unknown_model(self, model: object) -> None:
        """Warn once per name about a model this version does not know; it is sent anyway."""
        name = unknown_model(model)
        if name is None or name in self._models_warned:
            return
        self._models_warned.add(name)
        logger.warning(
            f"{self}: model {name!r} is not one this version knows ({known_models()}); "
            "sending it as given, and Waves decides"
        )

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
        # Text arriving from now until the next reply begins is the interrupted
        # one's, unless it belongs to uninterruptible speech that plays on.
        self._after_interruption = True
        self._turn_context = None
        self._kept_at_barge_in = set(self.get_audio_contexts())
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
        if not self._running or self._policy.gave_up:
            return
        logger.debug(f"{self}: opening connection ({reason})")
        task = asyncio.get_running_loop().create_task(
            self._connect_with_backoff(), name="waves-connect"
        )
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _connect_with_backoff(self) -> None:
        """Open one connection, retrying as the reconnect policy says, and hand it on."""
        retry_after_s: float | None = None
        while self._running and not self._policy.gave_up:
            # The wait is taken here, in this task of its own, never in a
            # socket's callback: the session hears of every close at once.
            delay = retry_after_s if retry_after_s is not None else self._policy.open_delay_s()
            if delay > 0:
                await asyncio.sleep(delay)
                if not self._running or self._policy.gave_up:
                    return
            started = time.monotonic()
            self._policy.attempt_started(started)
            self._wake_timer()
            try:
                websocket = await open_socket(
                    self._url,
                    self._api_key,
                    extra_headers={"X-Source": "pipecat-waves"},
                    open_timeout_s=self._open_timeout_s,
                )
            except WavesConnectError as e:
                retry_after_s = e.retry_after_s
                if not await self._attempt_failed(e):
                    return
                if not self._lead_retries():
                    # Another task already retries: one attempt at a time
                    # reaches a server that is down. The session asks for
                    # its spares again once a connection opens.
                    self._session.connection_failed_to_open()
                    return
                continue
            lane_id = self._lane_opened(websocket, started)
            now = time.monotonic()
            # After a drop, an answer on the new socket proves Waves is back.
            prove = self._policy.down_for(now) is not None
            await self._on_policy(self._policy.opened(lane_id, now))
            await self._act(self._session.connection_opened(lane_id, now, prove=prove))
            self._wake_timer()
            return

    def _lead_retries(self) -> bool:
        """Whether this task is the one retrying (the first to fail takes the lead)."""
        me = asyncio.current_task()
        leader = self._retrying
        if leader is None or leader.done() or leader is me:
            self._retrying = me
            return True
        return False

    async def _attempt_failed(self, error: WavesConnectError) -> bool:
        """Tell the policy and the app of a failed attempt; whether to try again."""
        self._last_failure = str(error)
        await self._call_event_handler("on_connection_error", str(error))
        if error.permanent:
            self._session.connection_failed_to_open()
            category = (
                ErrorCategory.AUTHENTICATION
                if error.auth_rejected
                else ErrorCategory.INVALID_REQUEST
            )
            await self._on_policy(
                self._policy.attempt_failed(time.monotonic(), rc.AttemptFailure.PERMANENT),
                give_up=(str(error), category),
            )
            return False
        if self._lanes and error.refused:
            # Working already: the server (or account) allows no more
            # sockets. Work with the ones open; that is not a failure.
            logger.info(f"{self}: {error}; going on with {len(self._lanes)} connection(s)")
            self._session.connection_failed_to_open()
            self._session.connection_limit_reached(len(self._lanes), time.monotonic())
            return False
        failure = rc.AttemptFailure.REFUSED if error.refused else rc.AttemptFailure.UNREACHABLE
        # The first failure of an outage is worth a warning; each retry after it is detail.
        first = self._policy.down_for(time.monotonic()) is None or self._policy.open_delay_s() == 0
        logger.log("WARNING" if first else "DEBUG", f"{self}: {error}")
        await self._on_policy(self._policy.attempt_failed(time.monotonic(), failure))
        return True

    def _lane_opened(self, websocket: Any, started: float) -> int:
        lane_id = next(self._lane_ids)
        opened_in = f"{1000 * (time.monotonic() - started):.0f} ms"
        if not self._connected_once:
            self._connected_once = True  # said once; later sockets are detail
            logger.info(f"{self}: connected in {opened_in}")
        logger.debug(f"{self}: connection {lane_id} open in {opened_in}")
        self._lanes[lane_id] = LiveSocket(
            lane_id, websocket, LiveSocketHandlers(self._on_lane_message, self._on_lane_closed)
        )
        return lane_id

    async def _on_lane_message(self, lane_id: int, message: str | bytes) -> None:
        await self._on_policy(self._policy.answered(lane_id, time.monotonic()))
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
        now = time.monotonic()
        retired = self._session.connection_state(lane_id) is sn.ConnState.RETIRED
        how = rc.Close.RETIRED if retired or not self._running else _close_kind(code, reason)
        refused = how is rc.Close.REFUSED and lane.messages_received == 0
        closed = f"code {code}, {reason or 'no reason given'}"
        if how is not rc.Close.RETIRED:
            self._last_failure = f"Waves closed the connection ({closed})"
            at_once = now - lane.opened_at < rc.PROVEN_AFTER_S and not lane.messages_received
            level = "DEBUG" if not at_once or (refused and self._lanes) else "WARNING"
            logger.log(level, f"{self}: Waves closed connection {lane_id} ({closed})")
            if refused and self._lanes:
                # Turned away while others work: the account allows no more sockets.
                self._session.connection_limit_reached(len(self._lanes), now)
        # The session first, so that no reply waits on a socket that is gone.
        await self._act(self._session.connection_lost(lane_id, now, refused=refused))
        await self._on_policy(
            self._policy.closed(lane_id, now, how),
            give_up=(
                pe.auth_close_message(closed),
                ErrorCategory.AUTHENTICATION,
            ),
        )
        self._wake_timer()

    async def _on_policy(
        self,
        actions: list[rc.Action],
        *,
        give_up: tuple[str, ErrorCategory] | None = None,
    ) -> None:
        """Carry out what the reconnect policy decided."""
        for action in actions:
            if isinstance(action, rc.Connected):
                await self._call_event_handler("on_connected")
            elif isinstance(action, rc.Disconnected):
                await self._call_event_handler("on_disconnected")
            elif isinstance(action, rc.Unusable):
                await self._report_unreachable(action)
            elif isinstance(action, rc.Usable):
                logger.info(f"{self}: Waves answers again after {action.down_for_s:.1f} s")
                await self.set_usable(True)
            elif isinstance(action, rc.GiveUp):
                message, category = give_up or (self._last_failure, ErrorCategory.CONNECTIVITY)
                self._running = False
                await self.push_error(message, category=category, force_treat_as_permanent=True)

    async def _report_unreachable(self, verdict: rc.Unusable) -> None:
        """Waves is gone for longer than the failover threshold: one error, unusable.

        Replies waiting for a connection are dropped under this one error
        (each would otherwise be reported on its own); the policy keeps
        reconnecting and the service becomes usable again when Waves answers.
        """
        down = f"{verdict.down_for_s:.1f} s"
        if verdict.refused:
            message = (
                f"Waves turned every connection away for {down}: the account's concurrency "
                "limit is reached. Run fewer sessions at once or raise the account's concurrency."
            )
            category = ErrorCategory.RATE_LIMIT
        elif verdict.closed_at_once:
            message = (
                f"Waves closed every connection right after opening it for {down} "
                f"(last: {self._last_failure}). Check the api_key, base_url and the "
                "account's concurrency limit."
            )
            category = ErrorCategory.CONNECTIVITY
        else:
            message = f"No connection to Waves for {down}. {self._last_failure}".rstrip()
            category = ErrorCategory.CONNECTIVITY
        message += (
            " The service is marked unusable (a ServiceSwitcher fails over now); it keeps "
            "retrying and becomes usable again when Waves answers."
        )
        outputs = self._session.unreachable(time.monotonic(), sn.UNREACHABLE_REASON)
        for output in outputs:
            if isinstance(output, sn.ContextFailed):
                await self._drop_context(output.context_id)
            else:
                await self._act([output])
        await self.push_error(scrub(message), category=category, force_treat_as_permanent=True)

    async def _drop_context(self, context_id: str) -> None:
        """End a reply the outage report covers, with no error of its own."""
        self._resamplers.pop(context_id, None)
        if self.audio_context_available(context_id):
            self._failed_contexts.add(context_id)
            await self.remove_audio_context(context_id)

    async def _give_up(self, message: str, category: ErrorCategory) -> None:
        """Report a failure no retry can fix, once, and stop reconnecting."""
        await self._on_policy(
            self._policy.give_up(auth=category is ErrorCategory.AUTHENTICATION),
            give_up=(message, category),
        )

    def _next_deadline(self, now: float) -> float:
        due = self._session.next_deadline(now)
        policy_due = self._policy.next_deadline()
        return due if policy_due is None else min(due, policy_due)

    async def _timer_loop(self) -> None:
        # Asleep until the session's or the policy's next deadline (a turn-end
        # guard, a stall probe, a keep-alive, an outage verdict), never on a
        # fixed tick: a tick costs CPU on every session all the time. Events
        # that bring a deadline forward wake it.
        while True:
            try:
                now = time.monotonic()
                delay = min(max(self._next_deadline(now) - now, 0.0), MAX_TIMER_SLEEP_S)
                self._timer_wakes_at = now + delay
                await asyncio.sleep(delay + TIMER_SLACK_S)
                self._timer_wakes_at = None
                await self._on_policy(self._policy.poll(time.monotonic()))
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
        if self._next_deadline(time.monotonic()) < wakes_at:
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
                self._spoken_model = self._session.model_of(output.context_id) or self._spoken_model
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
            await self._give_up(pe.auth_error_message(output.error.message), category)
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
        if not pe.names(error, pe.Subject.VOICE):
            return None
        if spoken is None or self._settings.voice == spoken:
            return None
        logger.warning(f"{self}: voice {self._settings.voice!r} refused; back to {spoken!r}")
        self._settings.voice = spoken
        return spoken

    def _keep_working_model(self) -> str | None:
        """After a model the server refused, go back to the last one that spoke.

        As with a voice: a settings update naming a model Waves does not offer
        fails one reply, reported once, and the service keeps speaking.
        Returns the model gone back to, if any.
        """
        spoken = self._spoken_model
        if spoken is None or self._settings.model == spoken:
            return None
        logger.warning(f"{self}: model {self._settings.model!r} refused; back to {spoken!r}")
        self._settings.model = spoken
        return spoken

    async def _fail_context(self, output: sn.ContextFailed) -> None:
        error = output.error
        self._resamplers.pop(output.context_id, None)
        if _category(error) is ErrorCategory.AUTHENTICATION:
            await self._give_up(pe.auth_error_message(error.message), ErrorCategory.AUTHENTICATION)
            return
        message = scrub(f"Waves could not synthesize this reply: {error.message}")
        if error.code:
            message += f" ({error.code})"
        refused_model = _refused_model(error, self._settings.model)
        message += _fix_for(error, refused_model)
        # A model the server does not offer names something that does not exist.
        category = ErrorCategory.INVALID_REQUEST if refused_model else _category(error)
        if refused_model:
            kept, what = self._keep_working_model(), "model"
        else:
            kept, what = self._keep_working_voice(error), "voice"
        if kept:
            message += f" Going on with {what} {kept!r}, the last one that spoke."
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


def _close_kind(code: int | None, reason: str) -> rc.Close:
    """What a close by the server says: the key, a socket limit, or a plain drop."""
    if pe.closed_for_key(code, reason):
        return rc.Close.AUTH
    if pe.closed_for_limit(code):
        return rc.Close.REFUSED
    return rc.Close.DROPPED
