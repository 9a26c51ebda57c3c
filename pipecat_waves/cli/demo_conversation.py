"""The demo's conversation: its script, and the stand-ins that play it in a pipeline.

:data:`SCRIPT` is what the user says and the bot answers, turn by turn.
:class:`ScriptedLLM` plays the LLM (and the user, who talks over the third
reply) at an LLM's pace; :class:`Speaker` plays the TTS audio at real pace, as
an output transport would, and records it into each turn's
:class:`TurnResult`. The command that runs them is :mod:`pipecat_waves.cli.demo`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.errors import ErrorCategory

#: Output rate of the demo (and of the WAV file).
SAMPLE_RATE = 24000
#: Silence written between turns, where the user would be speaking.
TURN_GAP_S = 0.5
#: How far into the interrupted reply's audio the user starts talking.
INTERRUPT_AFTER_S = 1.2
#: Longest wait for a reply to finish playing before the demo gives up.
TURN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ScriptedTurn:
    """One exchange: what the user says, what the bot answers."""

    user: str
    bot: str
    #: Seconds of the reply's audio after which the user talks over it.
    interrupt_after_s: float | None = None


#: The conversation. Turn 3 is long on purpose: the user cuts it short.
SCRIPT: tuple[ScriptedTurn, ...] = (
    ScriptedTurn(
        user="Hi, can I book a table for tonight?",
        bot="Of course. I have tables free at seven and at half past eight. Which would you like?",
    ),
    ScriptedTurn(
        user="Seven, please, for four people.",
        bot="Great, a table for four at seven tonight. What name should I put it under?",
    ),
    ScriptedTurn(
        user="Rivera. And what's on the menu?",
        bot="Thank you. Tonight we have fresh pasta with wild mushrooms. "
        "There is a grilled sea bass with lemon and herbs. "
        "There is also a slow cooked lamb shoulder. "
        "And for dessert, a dark chocolate tart with cream.",
        interrupt_after_s=INTERRUPT_AFTER_S,
    ),
    ScriptedTurn(
        user="Sorry, do you have anything vegetarian?",
        bot="Yes, the mushroom pasta and the roasted vegetable risotto are both vegetarian.",
    ),
)


class DemoFailure(Exception):
    """The conversation could not go on; the message says why, in one line."""


@dataclass
class TurnResult:
    """What happened in one turn, as measured at the speaker.

    Attributes:
        number: 1-based turn number.
        script: The scripted exchange.
        words_sent: Words the LLM streamed to the TTS service.
        first_text_at: When the first LLM token went out (monotonic seconds).
        first_audio_at: When the first audio reached the speaker.
        audio: PCM16 mono the speaker played, in push order.
        interrupted: The user talked over this reply.
        stale_bytes: Audio of this reply that arrived after the interruption
            (dropped; a correct service sends none).
        offset_s: Where the bot's reply starts in the WAV file.
        user_audio: The user's line, spoken for the WAV's right channel.
        user_offset_s: Where the user's line starts in the WAV file.
    """

    number: int
    script: ScriptedTurn
    words_sent: int = 0
    first_text_at: float | None = None
    first_audio_at: float | None = None
    audio: bytearray = field(default_factory=bytearray)
    interrupted: bool = False
    stale_bytes: int = 0
    offset_s: float = 0.0
    user_audio: bytes = b""
    user_offset_s: float = 0.0
    contexts: set[str] = field(default_factory=set)
    heard_enough: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def audio_s(self) -> float:
        """Seconds of audio played."""
        return len(self.audio) / (2 * SAMPLE_RATE)

    @property
    def ttfb_ms(self) -> float | None:
        """First LLM text to first audio, in milliseconds."""
        if self.first_text_at is None or self.first_audio_at is None:
            return None
        return 1000 * (self.first_audio_at - self.first_text_at)


class Conversation:
    """State shared by the scripted LLM and the speaker."""

    def __init__(self, script: Sequence[ScriptedTurn]) -> None:
        self.turns = [TurnResult(i + 1, turn) for i, turn in enumerate(script)]
        self.current: TurnResult | None = None
        self.failure: str | None = None
        self.failed_for_key = False
        self.failed = asyncio.Event()
        self.done = asyncio.Event()
        self._by_context: dict[str, TurnResult] = {}

    def fail(self, message: str, category: ErrorCategory | None = None) -> None:
        """Stop the conversation: the first failure is the one reported."""
        if self.failure is None:
            self.failure = message
            self.failed_for_key = category is ErrorCategory.AUTHENTICATION
        self.failed.set()

    def turn_of(self, context_id: str | None) -> TurnResult | None:
        """The turn a TTS context belongs to; a new context joins the current turn."""
        key = context_id or ""
        turn = self._by_context.get(key)
        if turn is None and self.current is not None and not self.current.interrupted:
            turn = self.current
            self._by_context[key] = turn
            turn.contexts.add(key)
        return turn

    async def wait(self, event: asyncio.Event, what: str) -> None:
        """Wait for ``event``; fail on a pipeline error or after the turn timeout."""
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.failed.wait())}
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=TURN_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self.failure is not None:
            raise DemoFailure(self.failure)
        if not done:
            raise DemoFailure(f"no {what} within {TURN_TIMEOUT_S:.0f} s; run with -v to see why")


def llm_tokens(text: str) -> list[str]:
    """Cut text into LLM-like tokens: words with their leading space."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


class ScriptedLLM(FrameProcessor):
    """Plays the part of an LLM (and of the user) from a script.

    On start it runs the conversation: each reply is streamed as
    ``LLMFullResponseStartFrame``, one ``LLMTextFrame`` per token 20 to 40 ms
    apart after a short first-token delay, and ``LLMFullResponseEndFrame``.
    It waits for the speaker to finish a reply before the next one, except
    when the script says the user talks over it: then it broadcasts an
    interruption, as Pipecat's user aggregator does when the user speaks.
    """

    def __init__(
        self,
        conversation: Conversation,
        *,
        first_token_delay_s: float = 0.2,
        token_gap_s: tuple[float, float] = (0.02, 0.04),
        seed: int = 7,
        **kwargs: Any,
    ) -> None:
        """Create the LLM stand-in.

        Args:
            conversation: Shared state with the script and the results.
            first_token_delay_s: Delay before a reply's first token.
            token_gap_s: Range of the delay between tokens.
            seed: Seeds the token timing, so every run streams alike.
            **kwargs: Passed to ``FrameProcessor``.
        """
        super().__init__(name="ScriptedLLM", **kwargs)
        self._conversation = conversation
        self._first_token_delay_s = first_token_delay_s
        self._token_gap_s = token_gap_s
        self._random = random.Random(seed)
        self._script_task: asyncio.Task | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Start the script on ``StartFrame``; notice errors coming back up."""
        await super().process_frame(frame, direction)
        if isinstance(frame, ErrorFrame) and direction == FrameDirection.UPSTREAM:
            self._conversation.fail(frame.error, frame.category)
        elif isinstance(frame, EndFrame | CancelFrame) and self._script_task is not None:
            await self.cancel_task(self._script_task)
            self._script_task = None
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self._script_task = self.create_task(self._run_script(), name="demo-script")

    async def _run_script(self) -> None:
        conversation = self._conversation
        try:
            for turn in conversation.turns:
                conversation.current = turn
                await self._play_turn(turn)
                # The user speaks before the next reply.
                await asyncio.sleep(TURN_GAP_S)
        except DemoFailure as e:
            conversation.fail(str(e))
        finally:
            conversation.done.set()

    async def _play_turn(self, turn: TurnResult) -> None:
        conversation = self._conversation
        print(f"  user > {turn.script.user}", flush=True)
        stream = self.create_task(self._stream_reply(turn), name=f"demo-reply-{turn.number}")
        cut = turn.script.interrupt_after_s
        try:
            if cut is None:
                await conversation.wait(turn.finished, f"audio for turn {turn.number}")
                print(f"  bot  > {turn.script.bot}", flush=True)
                return
            await conversation.wait(turn.heard_enough, f"{cut} s of audio in turn {turn.number}")
        finally:
            if not stream.done():
                await self.cancel_task(stream)
        spoken = _spoken_part(turn.script.bot, turn.audio_s, cut)
        print(f"  bot  > {spoken} ...", flush=True)
        print(f"         (the user talks over the bot {cut} s into this reply)", flush=True)
        await self.broadcast_interruption()

    async def _stream_reply(self, turn: TurnResult) -> None:
        await self.push_frame(LLMFullResponseStartFrame())
        await asyncio.sleep(self._first_token_delay_s)
        for token in llm_tokens(turn.script.bot):
            if turn.first_text_at is None:
                turn.first_text_at = time.monotonic()
            await self.push_frame(LLMTextFrame(token))
            turn.words_sent += 1
            await asyncio.sleep(self._random.uniform(*self._token_gap_s))
        await self.push_frame(LLMFullResponseEndFrame())


def _spoken_part(reply: str, audio_s: float, cut_s: float) -> str:
    """A rough guess of the words heard by ``cut_s``, for the printed transcript."""
    words = reply.split()
    # About 2.6 words a second at normal pace; only used for the printout.
    count = max(1, min(len(words), round(2.6 * min(audio_s, cut_s))))
    return " ".join(words[:count])


class Speaker(FrameProcessor):
    """Stands in for an output transport: plays TTS audio at real pace, and records it.

    Each chunk takes as long as it would take to play, so an interruption
    stops the recording where a listener would stop hearing the bot; audio
    still queued is dropped by Pipecat, as an output transport drops it.
    """

    def __init__(self, conversation: Conversation, **kwargs: Any) -> None:
        """Create the speaker.

        Args:
            conversation: Shared state; audio is recorded into its turns.
            **kwargs: Passed to ``FrameProcessor``.
        """
        super().__init__(name="Speaker", **kwargs)
        self._conversation = conversation
        self._playing_until = 0.0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Play audio, mark interruptions and reply ends, pass everything on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._playing_until = 0.0
            current = self._conversation.current
            if current is not None and current.script.interrupt_after_s is not None:
                current.interrupted = True
        elif isinstance(frame, TTSAudioRawFrame):
            await self._play(frame)
        elif isinstance(frame, TTSStoppedFrame):
            turn = self._conversation.turn_of(frame.context_id)
            if turn is not None:
                turn.finished.set()
        await self.push_frame(frame, direction)

    async def _play(self, frame: TTSAudioRawFrame) -> None:
        turn = self._conversation.turn_of(frame.context_id)
        if turn is None:
            return
        if turn.interrupted:
            turn.stale_bytes += len(frame.audio)
            return
        now = time.monotonic()
        if turn.first_audio_at is None:
            turn.first_audio_at = now
        turn.audio += frame.audio
        cut = turn.script.interrupt_after_s
        if cut is not None and turn.audio_s >= cut:
            turn.heard_enough.set()
        # Keep a running clock, so small sleep overshoots do not add up.
        start = max(now, self._playing_until)
        self._playing_until = start + len(frame.audio) / (2 * frame.sample_rate)
        await asyncio.sleep(self._playing_until - now)
