"""Pipecat text-to-speech service for Smallest.ai's Waves live API.

:class:`WavesTTSService` is built, started and stopped here, takes the text
and the barge-ins here, and hands both to its sans-I/O session
(:mod:`pipecat_waves.protocol.session`). What it does with its sockets is in
:mod:`~pipecat_waves.service.reconnecting`, how it carries out the session's
outputs in :mod:`~pipecat_waves.service.outputs`, and how it reports failures
in :mod:`~pipecat_waves.service.failures`: mixins of this one class.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.text.base_text_aggregator import TextType
from pipecat.utils.types import is_given

from pipecat_waves.credentials import clean_api_key, scrub
from pipecat_waves.log import logger
from pipecat_waves.protocol import reconnect as rc
from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol.constants import DEFAULT_BASE_URL
from pipecat_waves.protocol.requests import VoiceParams
from pipecat_waves.protocol.traits import ServerTraits
from pipecat_waves.service.connection import LiveSocket, live_url
from pipecat_waves.service.failures import FailureReportsMixin
from pipecat_waves.service.first_clause import FirstClause, FirstClauseAggregator
from pipecat_waves.service.language import language_to_waves_language
from pipecat_waves.service.outputs import SessionOutputsMixin
from pipecat_waves.service.pipecat_adapter import ReportedFailuresAdapter, install_text_aggregator
from pipecat_waves.service.reconnecting import ReconnectingMixin
from pipecat_waves.service.resample import StreamResampler, wire_rate_for
from pipecat_waves.service.settings import WavesTTSSettings, initial_settings
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

#: How long Waves may be unreachable before the service reports itself
#: unusable (so a ServiceSwitcher fails over). A dropped socket is replaced in
#: about one handshake (a few hundred ms to the cloud API) and a retry or four
#: of the backoff fit in this; a bot whose turns come every few seconds loses
#: at most the turn under way when the verdict comes.
DEFAULT_FAILOVER_AFTER_S = 2.0


def _given(value: Any) -> Any:
    return value if is_given(value) else None


@traced_replies
class WavesTTSService(
    ReconnectingMixin, SessionOutputsMixin, FailureReportsMixin, ReportedFailuresAdapter, TTSService
):
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
        self._connections: dict[int, LiveSocket] = {}
        self._connection_ids = itertools.count(1)
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
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(
            *(connection.shutdown() for connection in connections), return_exceptions=True
        )

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
