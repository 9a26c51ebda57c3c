"""The web demo's bot: one Pipecat pipeline per browser connection.

The pipeline is the usual voice agent with a script in place of the
speech-to-text and the LLM::

    transport in → Silero VAD → user turns → scripted replies → WavesTTSService → transport out

Silero's VAD decides when the user speaks; Pipecat's user turn processor turns
that into a user turn: when the turn starts it broadcasts an interruption (so
talking over the bot stops it), and when the user has been quiet for
:data:`USER_SPEECH_TIMEOUT_S` it ends the turn, and the next scripted reply
is streamed token by token, as an LLM would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMRunFrame,
    LLMTextFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
from pipecat.turns.user_turn_processor import UserTurnProcessor
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from pipecat_waves.log import logger

#: Rate of the user's audio into the pipeline (Silero runs at 16 kHz).
IN_RATE = 16000
#: Rate of the bot's audio: one Waves produces as is, and WebRTC's Opus takes.
OUT_RATE = 24000
#: Quiet after the user's speech before the bot answers (on top of the VAD's stop time).
USER_SPEECH_TIMEOUT_S = 0.4
#: Longest wait for a pipeline to stop when the demo ends.
STOP_TIMEOUT_S = 1.0
#: The VAD's settings: Silero's defaults, written out so the demo and its test agree.
VAD_PARAMS = VADParams(confidence=0.7, start_secs=0.2, stop_secs=0.2, min_volume=0.6)

#: What the bot says, in order; the first when the browser connects, then one
#: per user turn, starting over after the last. Long on purpose: talk over them.
REPLIES: tuple[str, ...] = (
    "Hello, and welcome to the Waves web demo. I am going to keep talking for quite a while, "
    "so that you can try to interrupt me. Just start speaking whenever you like, and I will "
    "stop and listen. Until then, here is a little story about a lighthouse keeper who "
    "counted ships every evening and wrote each one down in a worn green notebook.",
    "Sure, I stopped talking. That is what barge-in feels like through a real WebRTC "
    "connection. Say something else, then pause, and I will answer you.",
    "Every reply you hear is streamed word by word into the text to speech service, which "
    "speaks it over one persistent socket. Interrupt me again whenever you want to.",
    "When you talk over me, the reply is cancelled on the open socket, without reconnecting, "
    "and nothing of it is heard afterwards. Go ahead and try it once more.",
)


def llm_tokens(text: str) -> list[str]:
    """Cut text into LLM-like tokens: words with their leading space."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


class ScriptedReplies(FrameProcessor):
    """Plays the part of an LLM from a script.

    ``LLMRunFrame`` (queued when the browser connects) and the end of each
    user turn (``UserStoppedSpeakingFrame``) start the next reply: an
    ``LLMFullResponseStartFrame``, one ``LLMTextFrame`` per token 20 to 40 ms
    apart after a short first-token delay, and an ``LLMFullResponseEndFrame``.
    An interruption cancels a reply still being streamed.
    """

    def __init__(
        self,
        replies: Sequence[str] = REPLIES,
        *,
        first_token_delay_s: float = 0.2,
        token_gap_s: tuple[float, float] = (0.02, 0.04),
        seed: int = 7,
        **kwargs: Any,
    ) -> None:
        """Create the LLM stand-in.

        Args:
            replies: What the bot says, in order (repeated after the last).
            first_token_delay_s: Delay before a reply's first token.
            token_gap_s: Range of the delay between tokens.
            seed: Seeds the token timing, so every run streams alike.
            **kwargs: Passed to ``FrameProcessor``.
        """
        super().__init__(name="ScriptedReplies", **kwargs)
        if not replies:
            raise ValueError("the script needs at least one reply")
        self._replies = tuple(replies)
        self._replies_started = 0
        self._first_token_delay_s = first_token_delay_s
        self._token_gap_s = token_gap_s
        self._random = random.Random(seed)
        self._stream: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Start a reply on ``LLMRunFrame`` or a user turn's end; stop it on interruption."""
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame | EndFrame | CancelFrame):
            await self._stop_stream()
        if isinstance(frame, LLMRunFrame):
            await self._start_reply()
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, UserStoppedSpeakingFrame):
            await self._start_reply()

    async def _start_reply(self) -> None:
        await self._stop_stream()
        text = self._replies[self._replies_started % len(self._replies)]
        self._replies_started += 1
        logger.info(f"bot reply {self._replies_started}: {text[:40]}...")
        self._stream = self.create_task(self._stream_reply(text), name="scripted-reply")

    async def _stop_stream(self) -> None:
        if self._stream is not None and not self._stream.done():
            await self.cancel_task(self._stream)
        self._stream = None

    async def _stream_reply(self, text: str) -> None:
        await self.push_frame(LLMFullResponseStartFrame())
        await asyncio.sleep(self._first_token_delay_s)
        for token in llm_tokens(text):
            await self.push_frame(LLMTextFrame(token))
            await asyncio.sleep(self._random.uniform(*self._token_gap_s))
        await self.push_frame(LLMFullResponseEndFrame())


@dataclass(frozen=True)
class BotOptions:
    """How a bot is built; the defaults are the demo's.

    Attributes:
        replies: The script.
        vad_params: Silero's settings.
        user_speech_timeout_s: Quiet after the VAD's stop before the bot answers.
    """

    replies: tuple[str, ...] = REPLIES
    vad_params: VADParams = field(default_factory=lambda: VAD_PARAMS.model_copy())
    user_speech_timeout_s: float = USER_SPEECH_TIMEOUT_S


def build_worker(
    connection: SmallWebRTCConnection,
    tts: TTSService,
    options: BotOptions | None = None,
    *,
    observers: Sequence[BaseObserver] = (),
) -> PipelineWorker:
    """Wire the scripted voice agent for one browser connection.

    Args:
        connection: The browser's peer connection (answered already).
        tts: The text-to-speech service (``WavesTTSService`` in the demo).
        options: Script and VAD settings (the demo's by default).
        observers: Pipecat observers to attach (measurements).

    Returns:
        The pipeline worker; it speaks the first reply when the browser connects
        and ends when the browser leaves.
    """
    options = options or BotOptions()
    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    )
    vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(params=options.vad_params))
    turns = UserTurnProcessor(
        user_turn_strategies=UserTurnStrategies(
            start=[VADUserTurnStartStrategy()],
            # No speech-to-text here: the VAD alone ends the user's turn.
            stop=[
                SpeechTimeoutUserTurnStopStrategy(
                    user_speech_timeout=options.user_speech_timeout_s,
                    wait_for_transcript=False,
                )
            ],
        )
    )
    pipeline = Pipeline(
        [
            transport.input(),
            vad,
            turns,
            ScriptedReplies(options.replies),
            tts,
            transport.output(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=OUT_RATE),
        observers=list(observers),
        enable_rtvi=False,
    )

    @transport.event_handler("on_client_connected")
    async def on_client_connected(_transport: Any, _client: Any) -> None:
        # The bot speaks first.
        await worker.queue_frame(LLMRunFrame())

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport: Any, _client: Any) -> None:
        await worker.cancel()

    return worker


#: The LLM's instructions when the demo talks to a real LLM.
SYSTEM_PROMPT = (
    "You are a friendly voice assistant in a demo of a text-to-speech service. Your replies "
    "are spoken aloud, so keep them to two or three sentences, with no lists, markdown or emoji."
)


def build_agent_worker(
    connection: SmallWebRTCConnection, tts: TTSService, *, openai_api_key: str
) -> PipelineWorker:
    """The same bot with OpenAI's speech-to-text and LLM in place of the script.

    Args:
        connection: The browser's peer connection (answered already).
        tts: The text-to-speech service.
        openai_api_key: Key for OpenAI's speech-to-text and LLM.

    Returns:
        The pipeline worker; it greets when the browser connects and ends when
        the browser leaves.
    """
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.openai.stt import OpenAISTTService

    transport = SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    )
    context = LLMContext(messages=[{"role": "system", "content": SYSTEM_PROMPT}])
    # The user aggregator runs the VAD; the turn ends after a pause with a transcript.
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(params=VAD_PARAMS),
            user_turn_strategies=UserTurnStrategies(
                start=[VADUserTurnStartStrategy()],
                stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=USER_SPEECH_TIMEOUT_S)],
            ),
        ),
    )
    pipeline = Pipeline(
        [
            transport.input(),
            OpenAISTTService(api_key=openai_api_key),
            aggregators.user(),
            OpenAILLMService(
                api_key=openai_api_key,
                settings=OpenAILLMService.Settings(model="gpt-4.1-mini"),
            ),
            tts,
            transport.output(),
            aggregators.assistant(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=OUT_RATE),
        enable_rtvi=False,
    )

    @transport.event_handler("on_client_connected")
    async def on_client_connected(_transport: Any, _client: Any) -> None:
        await worker.queue_frame(LLMRunFrame())

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport: Any, _client: Any) -> None:
        await worker.cancel()

    return worker


async def run_bot(
    connection: SmallWebRTCConnection,
    make_tts: Callable[[], TTSService],
    options: BotOptions | None = None,
    *,
    observers: Sequence[BaseObserver] = (),
    openai_api_key: str | None = None,
) -> None:
    """Run one bot until its browser leaves (or the task is cancelled).

    Args:
        connection: The browser's peer connection (answered already).
        make_tts: Makes this bot's text-to-speech service.
        options: Script and VAD settings (the demo's by default).
        observers: Pipecat observers to attach (measurements).
        openai_api_key: With a key, OpenAI's speech-to-text and LLM answer
            instead of the script.
    """
    if openai_api_key:
        worker = build_agent_worker(connection, make_tts(), openai_api_key=openai_api_key)
    else:
        worker = build_worker(connection, make_tts(), options, observers=observers)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    run = asyncio.ensure_future(runner.run())
    try:
        await asyncio.shield(run)
    except asyncio.CancelledError:
        # Stopped from outside (Ctrl-C): end the pipeline before the connection.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(worker.cancel(), STOP_TIMEOUT_S)
            await asyncio.wait_for(run, STOP_TIMEOUT_S)
        raise
    finally:
        await connection.disconnect()
