"""A short spoken conversation through ``WavesTTSService``, written to a WAV file.

Run it with ``pipecat-waves demo`` (or ``python -m pipecat_waves.cli.demo``). A
scripted LLM streams four replies token by token, with an LLM's timing, into a
Pipecat pipeline holding :class:`~pipecat_waves.WavesTTSService`; a speaker
stand-in plays the audio at real pace and records it. In the third turn the
user talks over the bot: an ``InterruptionFrame`` cuts the reply 1.2 seconds
into its audio, and the next turn answers at once.

With ``WAVES_API_KEY`` (or ``SMALLEST_API_KEY``) set, the voice is Smallest.ai's;
without one the demo starts the embedded local server with an offline Piper
voice, so it runs on a fresh install with no network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.utils.errors import ErrorCategory
from pipecat.workers.runner import WorkerRunner

from pipecat_waves.cli.commands import (
    CliError,
    Endpoint,
    SayRequest,
    api_key_from,
    command_logs,
    open_endpoint,
    output_format,
    synthesize,
    write_audio,
)
from pipecat_waves.cli.demo_options import add_arguments
from pipecat_waves.cli.interrupt import EXIT_INTERRUPTED, run_interruptible
from pipecat_waves.protocol import errors as pe
from pipecat_waves.service.websocket import WavesTTSService

#: Output rate of the demo (and of the WAV file).
SAMPLE_RATE = 24000
#: Silence written between turns, where the user would be speaking.
TURN_GAP_S = 0.5
#: How far into the interrupted reply's audio the user starts talking.
INTERRUPT_AFTER_S = 1.2
#: How long the user has been talking when the bot stops: the VAD's reaction time,
#: so in the WAV the barge-in is heard as two voices overlapping briefly.
BARGE_IN_LEAD_S = 0.3
#: The user's voice in the WAV (right channel); any voice id the server knows.
USER_VOICE = "liam"
#: Longest wait for a reply to finish playing before the demo gives up.
TURN_TIMEOUT_S = 30.0
#: After Ctrl-C, longest wait for the pipeline to stop (the whole exit takes under a second).
STOP_TIMEOUT_S = 0.25


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


@dataclass
class DemoReport:
    """The outcome of a demo run."""

    turns: list[TurnResult]
    where: str
    local: bool
    output: Path
    wav_seconds: float


def lay_out(turns: Sequence[TurnResult]) -> float:
    """Place every line on the WAV's timeline; return its length in seconds.

    The user speaks, a pause, the bot answers. After an interrupted reply the
    user's next line starts :data:`BARGE_IN_LEAD_S` before the bot stops, as it
    did in the pipeline (the bot stops because the user is talking).
    """
    t = 0.0
    end = 0.0
    for turn in turns:
        turn.user_offset_s = t
        user_s = len(turn.user_audio) / (2 * SAMPLE_RATE)
        turn.offset_s = t + user_s + (TURN_GAP_S if user_s else 0.0)
        bot_end = turn.offset_s + turn.audio_s
        end = max(bot_end, t + user_s)
        t = max(bot_end - BARGE_IN_LEAD_S, 0.0) if turn.interrupted else bot_end + TURN_GAP_S
    return end


def write_conversation(path: Path, turns: Sequence[TurnResult]) -> float:
    """Write the conversation as stereo: the bot on the left, the user on the right.

    Sets each turn's offsets (see :func:`lay_out`) and returns the file's
    length in seconds.
    """
    seconds = lay_out(turns)
    stereo = np.zeros((round(seconds * SAMPLE_RATE) + 1, 2), dtype=np.int16)
    for turn in turns:
        for channel, pcm, offset in (
            (0, turn.audio, turn.offset_s),
            (1, turn.user_audio, turn.user_offset_s),
        ):
            samples = np.frombuffer(bytes(pcm), dtype="<i2")
            first = round(offset * SAMPLE_RATE)
            stereo[first : first + len(samples), channel] = samples
    write_audio(path, stereo.tobytes(), SAMPLE_RATE, channels=2)
    return len(stereo) / SAMPLE_RATE


async def speak_user_lines(endpoint: Endpoint, turns: Sequence[TurnResult], output: Path) -> None:
    """Speak the user's lines in another voice, so the WAV has both sides."""
    for turn in turns:
        request = SayRequest(
            text=turn.script.user, output=output, voice=USER_VOICE, sample_rate=SAMPLE_RATE
        )
        turn.user_audio = await synthesize(endpoint, request)


def format_timeline(turns: Sequence[TurnResult]) -> str:
    """One line per utterance: where it is in the WAV, who speaks, what is said."""
    lines = []
    for turn in turns:
        spoken = (
            (
                turn.user_offset_s,
                len(turn.user_audio) / (2 * SAMPLE_RATE),
                "user",
                turn.script.user,
            ),
            (turn.offset_s, turn.audio_s, "bot", turn.script.bot),
        )
        for start, length, who, text in spoken:
            if length <= 0:
                continue
            shown = text if len(text) <= 48 else text[:47] + "…"
            cut = "  (cut: the user talks over it)" if who == "bot" and turn.interrupted else ""
            lines.append(f"  {start:6.2f}-{start + length:6.2f} s  {who:<4}  {shown}{cut}")
    return "\n".join(lines)


async def run_demo(
    output: Path,
    *,
    api_key: str | None,
    base_url: str | None = None,
    voice: str = "avery",
    backend: str = "piper",
) -> DemoReport:
    """Run the scripted conversation and write it to ``output``.

    Raises:
        CliError: The conversation could not be completed; one line says why.
    """
    output_format(output)
    async with open_endpoint(api_key, base_url, backend) as endpoint:
        print(f"Speaking through {endpoint.describe()}", end="")
        offline = "offline Piper voice" if backend == "piper" else "test tones"
        print(f" (no WAVES_API_KEY set: {offline})." if endpoint.local else ".")
        print("", flush=True)
        conversation = Conversation(SCRIPT)
        tts = WavesTTSService(
            api_key=endpoint.api_key or "",
            base_url=endpoint.ws_base,
            sample_rate=SAMPLE_RATE,
            settings=WavesTTSService.Settings(voice=voice),
        )
        pipeline = Pipeline([ScriptedLLM(conversation), tts, Speaker(conversation)])
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_out_sample_rate=SAMPLE_RATE),
            enable_rtvi=False,
        )
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        run = asyncio.create_task(runner.run())
        finished = asyncio.create_task(conversation.done.wait())
        try:
            await asyncio.wait({run, finished}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Ctrl-C: stop the pipeline now (closing its sockets), not after the script.
            finished.cancel()
            await _stop_now(worker, run)
            raise
        if not run.done():
            if conversation.failure is None:
                await worker.queue_frame(EndFrame())
            else:
                await worker.cancel()
        await run
        finished.cancel()
        where = endpoint.describe()
        if conversation.failure is None and conversation.done.is_set():
            await speak_user_lines(endpoint, conversation.turns, output)
    if conversation.failure is not None:
        raise CliError(_with_fix(conversation, voice))
    if not conversation.done.is_set():
        raise CliError("the pipeline stopped before the conversation ended; run with -v to see why")
    seconds = write_conversation(output, conversation.turns)
    return DemoReport(conversation.turns, where, endpoint.local, output, seconds)


async def _stop_now(worker: PipelineWorker, run: asyncio.Task[Any]) -> None:
    """Cancel the pipeline and wait briefly for it; the caller is being cancelled."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(worker.cancel(), STOP_TIMEOUT_S)
    if not run.done():
        run.cancel()
    await asyncio.wait({run}, timeout=STOP_TIMEOUT_S)


def _with_fix(conversation: Conversation, voice: str) -> str:
    """The pipeline's error, with the fix said in this command's own terms."""
    failure = conversation.failure or ""
    if conversation.failed_for_key:
        return pe.cli_key_fix(failure.split(". ")[0])
    if pe.VOICE_FIX in failure:
        return pe.cli_unknown_voice(voice, flag=True)
    return failure


def format_table(turns: Sequence[TurnResult]) -> str:
    """The per-turn table: where it starts in the WAV, TTFB, audio, words, interrupted."""
    header = ("turn", "at (s)", "TTFB (ms)", "audio (s)", "words sent", "interrupted")
    rows = [header]
    for t in turns:
        ttfb = "-" if t.ttfb_ms is None else f"{t.ttfb_ms:.0f}"
        rows.append(
            (
                str(t.number),
                f"{t.offset_s:.2f}",
                ttfb,
                f"{t.audio_s:.2f}",
                str(t.words_sent),
                "yes" if t.interrupted else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo for parsed ``args``; print the transcript and the table.

    Returns:
        The process exit code.
    """
    output = Path(args.output)
    try:
        with command_logs(args.verbose):
            report = run_interruptible(
                run_demo(
                    output,
                    api_key=api_key_from(args.api_key),
                    base_url=args.base_url,
                    voice=args.voice,
                    backend=args.backend,
                )
            )
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print()
    print(format_table(report.turns))
    print()
    for t in report.turns:
        if t.interrupted:
            stale_ms = 1000 * t.stale_bytes / (2 * SAMPLE_RATE)
            print(
                f"Turn {t.number}: the user talked over the bot {t.audio_s:.2f} s in; "
                f"{stale_ms:.0f} ms of the cut reply arrived afterwards (none should), "
                "and the next turn answered straight away."
            )
    print(
        "TTFB: from the reply's first LLM token to its first audio "
        "(includes waiting for the LLM to write the first clause)."
    )
    print()
    print(f"Timeline of {output} (left channel: bot, right channel: user):")
    print(format_timeline(report.turns))
    print(f"Wrote {report.wav_seconds:.1f} s of stereo audio to {output}.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="pipecat-waves demo",
        description="Speak a short scripted conversation with one barge-in into a WAV file.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
