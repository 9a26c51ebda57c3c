#!/usr/bin/env python
"""Barge-in, turn-taking and load benchmark: WavesTTSService vs. SmallestTTSService.

Both services run in real Pipecat pipelines, one after the other, against the
same local Waves-compatible server (tone backend, simulated handshake and
time to first byte). Each pipeline is ``[in-recorder, TTS service,
out-recorder]``; the recorders stamp every downstream frame with
``time.perf_counter()``, so every number is measured at the service's edges.

Usage::

    python benchmarks/bench_barge_in.py [--quick] [--json out.json]

See ``benchmarks/README.md`` for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.smallest.tts import SmallestTTSService
from pipecat.services.tts_service import TTSService
from pipecat.workers.runner import WorkerRunner

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour, ToneBackend

API_KEY = "sk-bench-0123456789"

#: This file, run again as the child-process server (see ``serve``).
_SCRIPT = str(Path(__file__).resolve())

OURS = "pipecat-waves WavesTTSService"
THEIRS = "pipecat SmallestTTSService"

#: The reply the user talks over: long enough to be mid-stream at the barge-in.
INTERRUPTED_REPLY = (
    "Let me tell you about the menu tonight in some detail. "
    "We have seven kinds of fresh pasta made in house. "
    "There is also a grilled fish special with lemon and herbs. "
    "Every dessert is baked in our kitchen each morning. "
    "Would you like me to read out the whole wine list as well?"
)
#: The reply after the barge-in. One sentence, so the server speaks it as one
#: segment and its exact audio is known in advance (see ``expected_audio``).
NEXT_REPLY = "Of course, here are the desserts."

#: Back-to-back turns: reply B is queued right behind reply A.
REPLY_A = "Your table is booked for eight tonight. We look forward to seeing you."
REPLY_B = "Is there anything else I can help with?"

#: Replies spoken back to back for the CPU measurement.
CPU_REPLIES = (
    "Good evening and welcome back. Tonight the chef recommends the risotto.",
    "The risotto comes with wild mushrooms. It takes about twenty minutes.",
    "We also have a vegetarian lasagne. It is baked with spinach and ricotta.",
    "For dessert there is a lemon tart. Coffee is served until midnight.",
)

#: What every concurrent session speaks (several sentences, about 5 s of audio).
LOAD_REPLY = "Thanks for calling today. Our kitchen opens at five. We close at eleven."
LOAD_REPLY_QUICK = "Thanks for calling today. Our kitchen opens at five."


# ----------------------------------------------------------------- config


@dataclass
class BenchConfig:
    """Everything a benchmark run can vary.

    Attributes:
        sample_rate: Output rate asked of both services.
        runs: Repetitions of each latency scenario (medians are reported).
        cpu_replies: How many of ``CPU_REPLIES`` one CPU run speaks.
        load_steps: Session counts tried for the concurrency measurement.
        load_reply: Text every concurrent session speaks.
        load_trials: Trials per N and service (all must keep up).
        load_stagger_s: The sessions' replies start spread over this window.
        load_budget_s: Stop stepping up sessions once this much time went by.
        keep_up_slack_s: How far behind real time a session may fall.
        latency_server: Server switches for scenarios 1 to 5.
        load_server: Server switches for the concurrency scenario.
        server_in_process: Run the server in this process (quick to start;
            its CPU is then counted too) instead of a child process.
        warmup_s: Wait after a pipeline starts, so both services have their
            socket open before the first word (ours opens it in the
            background, the other one while starting).
        idle_s: How long the CPU run first measures an idle session.
    """

    sample_rate: int = 24000
    runs: int = 5
    cpu_replies: int = 4
    load_steps: tuple[int, ...] = (1, 80, 100, 120, 140, 160, 200)
    load_trials: int = 2
    load_reply: str = LOAD_REPLY
    load_stagger_s: float = 1.0
    load_budget_s: float = 170.0
    keep_up_slack_s: float = 0.2
    latency_server: dict[str, float] = field(
        default_factory=lambda: {
            "handshake_delay_ms": 100,
            "ttfb_ms": 150,
            "chunk_ms": 150,
            # 150 ms of audio every 30 ms: five times faster than real time.
            "chunk_interval_ms": 30,
        }
    )
    load_server: dict[str, float] = field(
        default_factory=lambda: {
            "handshake_delay_ms": 100,
            # The server synthesizes a connection's segments one after another
            # and sleeps a fixed interval between chunks, so a per-segment TTFB
            # would put the *server* behind real time at every sentence; this
            # scenario measures the client, so the server adds none.
            "ttfb_ms": 0,
            "chunk_ms": 150,
            "chunk_interval_ms": 150,  # exactly real time
        }
    )
    server_in_process: bool = False
    warmup_s: float = 0.4
    idle_s: float = 1.5

    @classmethod
    def quick(cls) -> BenchConfig:
        """Fewer runs and sessions: about a minute."""
        return cls(
            runs=2,
            cpu_replies=2,
            load_steps=(1, 40),
            load_trials=1,
            load_reply=LOAD_REPLY_QUICK,
            load_budget_s=20.0,
        )

    @classmethod
    def tiny(cls) -> BenchConfig:
        """The smallest run that still exercises every scenario (for tests)."""
        fast = {"handshake_delay_ms": 100, "ttfb_ms": 50, "chunk_ms": 150, "chunk_interval_ms": 20}
        return cls(
            runs=1,
            cpu_replies=1,
            load_steps=(1, 2),
            load_trials=1,
            load_reply="Thanks for calling today.",
            load_stagger_s=0.1,
            load_budget_s=15.0,
            latency_server=fast,
            load_server={
                "handshake_delay_ms": 50,
                "ttfb_ms": 0,
                "chunk_ms": 150,
                "chunk_interval_ms": 150,
            },
            server_in_process=True,
            warmup_s=0.3,
            idle_s=0.2,
        )


# ---------------------------------------------------------------- servers


class HasUrl(Protocol):
    """A running server: where to connect."""

    @property
    def ws_base_url(self) -> str:
        """``ws://127.0.0.1:PORT``."""
        ...


class _Url:
    def __init__(self, url: str) -> None:
        self.ws_base_url = url


@contextlib.asynccontextmanager
async def serve(switches: dict[str, float], *, in_process: bool) -> AsyncIterator[HasUrl]:
    """Run the local server with ``switches``, here or in a child process.

    A child process keeps the server's CPU out of the client's
    ``time.process_time()`` and off the client's event loop.
    """
    behaviour = ServerBehaviour(**switches)  # type: ignore[arg-type]
    if in_process:
        async with LocalWavesServer(
            api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour
        ) as server:
            yield server
        return
    with tempfile.TemporaryFile() as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            _SCRIPT,
            "--serve",
            json.dumps(switches),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            if not line.startswith(b"PORT "):
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"benchmark server did not start:\n{tail}")
            yield _Url(f"ws://127.0.0.1:{int(line.split()[1])}")
        finally:
            # Closing stdin is the child's signal to stop (see _serve_forever).
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _serve_forever(switches: dict[str, float]) -> None:
    """Child-process side of :func:`serve`: serve until stdin closes."""
    behaviour = ServerBehaviour(**switches)  # type: ignore[arg-type]
    async with LocalWavesServer(
        api_key=API_KEY, backend=ToneBackend(), behaviour=behaviour
    ) as server:
        print(f"PORT {server.port}", flush=True)
        # Reading stdin to its end returns when the parent closes it or dies,
        # so the server never outlives the benchmark.
        await asyncio.to_thread(sys.stdin.buffer.read)


# --------------------------------------------------------------- services

ServiceFactory = Callable[[str, int], TTSService]


def make_ours(url: str, sample_rate: int) -> TTSService:
    """Our service with its defaults (voice "avery")."""
    return WavesTTSService(api_key=API_KEY, base_url=url, sample_rate=sample_rate)


def make_theirs(url: str, sample_rate: int) -> TTSService:
    """Pipecat's service with its defaults (voice "meher")."""
    return SmallestTTSService(
        api_key=API_KEY,
        base_url=url,
        sample_rate=sample_rate,
        settings=SmallestTTSService.Settings(voice="meher"),
    )


SERVICES: dict[str, ServiceFactory] = {OURS: make_ours, THEIRS: make_theirs}


# ------------------------------------------------------------- pipelines


@dataclass
class Stamped:
    """A frame and when it went past a recorder (``time.perf_counter()``)."""

    t: float
    frame: Frame


class Recorder(FrameProcessor):
    """Passes every frame on and notes when each downstream frame went by.

    Direct mode: the frame is stamped and handed on in the same call, so the
    recorder adds no queue hop of its own to what is measured.
    """

    def __init__(self, name: str) -> None:
        """Create a recorder called ``name``."""
        super().__init__(name=name, enable_direct_mode=True)
        self.frames: list[Stamped] = []
        self.audio_bytes = 0
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Stamp downstream frames, then pass every frame on."""
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(Stamped(time.perf_counter(), frame))
            if isinstance(frame, TTSAudioRawFrame):
                self.audio_bytes += len(frame.audio)
            self._changed.set()
        await self.push_frame(frame, direction)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every frame); ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def audio(self) -> list[Stamped]:
        """The audio frames seen, in order."""
        return [s for s in self.frames if isinstance(s.frame, TTSAudioRawFrame)]


class Session:
    """One pipeline ``[in-recorder, service, out-recorder]`` and its runner."""

    def __init__(self, service: TTSService, sample_rate: int) -> None:
        """Build the pipeline around ``service``."""
        self.service = service
        self.inp = Recorder("bench-in")
        self.out = Recorder("bench-out")
        self.worker = PipelineWorker(
            Pipeline([self.inp, service, self.out]),
            cancel_on_idle_timeout=False,
            check_dangling_tasks=False,
            enable_rtvi=False,
            idle_timeout_secs=None,
            params=PipelineParams(
                audio_in_sample_rate=sample_rate, audio_out_sample_rate=sample_rate
            ),
        )
        self._runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

        @self.worker.event_handler("on_pipeline_started")
        async def _on_started(worker: PipelineWorker, frame: Frame) -> None:
            self._started.set()

    async def start(self, timeout_s: float = 15.0) -> None:
        """Start the pipeline and wait until frames can be sent."""
        await self._runner.add_workers(self.worker)
        self._task = asyncio.create_task(self._runner.run())
        await asyncio.wait_for(self._started.wait(), timeout_s)

    async def send(self, frames: Sequence[Frame]) -> None:
        """Queue ``frames`` at the head of the pipeline, in order, without pauses."""
        for frame in frames:
            await self.worker.queue_frame(frame)

    async def end(self, timeout_s: float) -> bool:
        """End gracefully (``EndFrame``); cancel and return ``False`` if that hangs."""
        assert self._task is not None
        await self.worker.queue_frame(EndFrame())
        done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
        if not done:
            await self.cancel()
            return False
        return True

    async def cancel(self) -> None:
        """Stop at once."""
        if self._task is None or self._task.done():
            return
        await self.worker.cancel()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._task, timeout=10)


def llm_reply(text: str) -> list[Frame]:
    """Frames an LLM produces for ``text``: start, one frame per word, end."""
    words = text.split(" ")
    tokens = [w + " " for w in words[:-1]] + [words[-1]]
    return [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(t) for t in tokens),
        LLMFullResponseEndFrame(),
    ]


# ------------------------------------------------------------ audio truth


def expected_audio(text: str, sample_rate: int) -> bytes:
    """The exact audio the tone backend makes for ``text`` as one segment.

    The tone backend is deterministic, so this is the byte string a correct
    client must push for a one-sentence reply; finding it in the output tells
    the reply's audio apart from anything else, whatever the frames' labels.
    """
    return ToneBackend().synthesize(text, voice_id="", speed=1.0, sample_rate=sample_rate).pcm


def expected_reply_audio_s(text: str, sample_rate: int) -> float:
    """Seconds of audio for a multi-sentence reply spoken one segment per sentence."""
    sentences = [s.strip() + "." for s in text.split(".") if s.strip()]
    total = sum(len(expected_audio(s, sample_rate)) for s in sentences)
    return total / (2 * sample_rate)


def expected_reply_bytes(text: str, sample_rate: int) -> int:
    """Bytes of audio for a multi-sentence reply spoken one segment per sentence."""
    return round(expected_reply_audio_s(text, sample_rate) * 2 * sample_rate)


def frame_at(frames: Sequence[Stamped], offset: int) -> int:
    """Index of the frame holding byte ``offset`` of the frames' joined audio."""
    end = 0
    for i, s in enumerate(frames):
        assert isinstance(s.frame, TTSAudioRawFrame)
        end += len(s.frame.audio)
        if offset < end:
            return i
    raise IndexError(offset)


def seconds(n_bytes: int, sample_rate: int) -> float:
    """Duration of ``n_bytes`` of mono PCM16."""
    return n_bytes / (2 * sample_rate)


class BenchError(Exception):
    """A run did not produce what the measurement needs (reported, not hidden)."""


# ------------------------------------------------------------- scenarios


@dataclass
class BargeInRun:
    """One barge-in.

    Attributes:
        interruption_in_service_ms: ``InterruptionFrame`` in to out of the service.
        stale_audio_ms: Audio pushed after the ``InterruptionFrame`` left that is
            not the next reply (judged by content, whatever its label).
        stale_by_label_ms: Audio after the ``InterruptionFrame`` labelled with the
            interrupted reply's context id.
        barge_in_to_next_audio_ms: ``InterruptionFrame`` in to the next reply's
            first audio frame out.
        heard_before_ms: Audio of the interrupted reply pushed before the
            interruption (shows the barge-in landed mid-reply).
        pushed_while_held_ms: Audio pushed after the ``InterruptionFrame``
            entered the service but before it left (a listener hears it,
            since the output has not been told to stop yet).
    """

    interruption_in_service_ms: float
    stale_audio_ms: float
    stale_by_label_ms: float
    barge_in_to_next_audio_ms: float
    heard_before_ms: float
    pushed_while_held_ms: float


async def barge_in_run(factory: ServiceFactory, url: str, cfg: BenchConfig) -> BargeInRun:
    """Talk over a long reply, then ask for the next one at once."""
    rate = cfg.sample_rate
    nxt = expected_audio(NEXT_REPLY, rate)
    session = Session(factory(url, rate), rate)
    await session.start()
    try:
        await asyncio.sleep(cfg.warmup_s)
        await session.send(llm_reply(INTERRUPTED_REPLY))
        # Barge in once a second of the reply has come out: the rest is still
        # being streamed by the server.
        if not await session.out.wait_until(lambda: session.out.audio_bytes >= 2 * rate, 10):
            raise BenchError("the long reply produced no audio within 10 s")
        sent_at_bytes = session.out.audio_bytes
        await session.send([InterruptionFrame(), *llm_reply(NEXT_REPLY)])

        def next_reply_arrived() -> bool:
            # The byte count first: searching the audio on every frame would
            # load the event loop that is being measured.
            return (
                session.out.audio_bytes - sent_at_bytes >= len(nxt)
                and _after_interruption_audio(session.out.frames).find(nxt) >= 0
            )

        if not await session.out.wait_until(next_reply_arrived, 10):
            raise BenchError("the next reply's audio did not come out intact within 10 s")
        # Anything of the interrupted reply still on its way would come now.
        await asyncio.sleep(0.5)
    finally:
        await _finish(session)
    return _analyse_barge_in(session, nxt, rate)


def _after_interruption_audio(frames: Sequence[Stamped]) -> bytes:
    chunks: list[bytes] = []
    seen = False
    for s in frames:
        if isinstance(s.frame, InterruptionFrame):
            seen = True
        elif seen and isinstance(s.frame, TTSAudioRawFrame):
            chunks.append(s.frame.audio)
    return b"".join(chunks)


def _analyse_barge_in(session: Session, nxt: bytes, rate: int) -> BargeInRun:
    t_in = next(s.t for s in session.inp.frames if isinstance(s.frame, InterruptionFrame))
    out = session.out.frames
    i_out = next(i for i, s in enumerate(out) if isinstance(s.frame, InterruptionFrame))
    before = [s for s in out[:i_out] if isinstance(s.frame, TTSAudioRawFrame)]
    after = [s for s in out[i_out + 1 :] if isinstance(s.frame, TTSAudioRawFrame)]
    stream = b"".join(s.frame.audio for s in after)  # type: ignore[attr-defined]
    at = stream.find(nxt)
    if at < 0:
        raise BenchError("the next reply's audio is not in the output intact")
    interrupted = {s.frame.context_id for s in before}  # type: ignore[attr-defined]
    stale_labelled = sum(
        len(s.frame.audio)  # type: ignore[attr-defined]
        for s in after
        if s.frame.context_id in interrupted  # type: ignore[attr-defined]
    )
    first_next = after[frame_at(after, at)]
    return BargeInRun(
        interruption_in_service_ms=1000 * (out[i_out].t - t_in),
        stale_audio_ms=1000 * seconds(len(stream) - len(nxt), rate),
        stale_by_label_ms=1000 * seconds(stale_labelled, rate),
        barge_in_to_next_audio_ms=1000 * (first_next.t - t_in),
        heard_before_ms=1000 * seconds(_bytes(before), rate),
        pushed_while_held_ms=1000 * seconds(_bytes([s for s in before if s.t >= t_in]), rate),
    )


def _bytes(frames: Sequence[Stamped]) -> int:
    return sum(len(s.frame.audio) for s in frames)  # type: ignore[attr-defined]


@dataclass
class BackToBackRun:
    """Two replies, the second sent right behind the first.

    Attributes:
        gap_ms: Reply A's last audio frame out to reply B's first audio frame out.
        reply_a_audio_ms: Audio before reply B's (reply A, by content).
    """

    gap_ms: float
    reply_a_audio_ms: float


async def back_to_back_run(factory: ServiceFactory, url: str, cfg: BenchConfig) -> BackToBackRun:
    """Send reply B's LLM frames right after reply A's ``LLMFullResponseEndFrame``."""
    rate = cfg.sample_rate
    b_audio = expected_audio(REPLY_B, rate)
    session = Session(factory(url, rate), rate)
    await session.start()
    try:
        await asyncio.sleep(cfg.warmup_s)
        await session.send([*llm_reply(REPLY_A), *llm_reply(REPLY_B)])

        enough = len(b_audio) + int(0.9 * expected_reply_bytes(REPLY_A, rate))

        def b_arrived() -> bool:
            return (
                session.out.audio_bytes >= enough
                and _joined(session.out.audio()).find(b_audio) >= 0
            )

        # Pipecat's service ends a turn only after 3 s without audio.
        if not await session.out.wait_until(b_arrived, 15):
            raise BenchError("reply B's audio did not come out intact within 15 s")
    finally:
        await _finish(session)
    audio = session.out.audio()
    at = _joined(audio).find(b_audio)
    if at <= 0:
        raise BenchError("no audio of reply A came before reply B")
    last_a = audio[frame_at(audio, at - 1)]
    first_b = audio[frame_at(audio, at)]
    return BackToBackRun(
        gap_ms=1000 * (first_b.t - last_a.t), reply_a_audio_ms=1000 * seconds(at, rate)
    )


def _joined(frames: Sequence[Stamped]) -> bytes:
    return b"".join(s.frame.audio for s in frames)  # type: ignore[attr-defined]


async def _finish(session: Session) -> None:
    # Everything measured has come out by now. Pipecat's service would hold
    # an EndFrame for its 3 s end-of-turn timeout, which measures nothing new,
    # so every session is cancelled the same way.
    await session.cancel()


@dataclass
class CpuRun:
    """Client CPU over several replies.

    Attributes:
        cpu_s: ``time.process_time()`` spent from the first LLM frame to the
            last reply's audio.
        audio_s: Seconds of audio pushed in that time.
        wall_s: Wall-clock time of the same span.
        cpu_ms_per_audio_s: ``cpu_s / audio_s`` in milliseconds.
        idle_cpu_ms_per_s: CPU per wall-clock second of the connected but idle
            session before the replies (the pipeline's own share included).
        server_in_process: The server ran in this process, so its CPU is included.
    """

    cpu_s: float
    audio_s: float
    wall_s: float
    cpu_ms_per_audio_s: float
    idle_cpu_ms_per_s: float
    server_in_process: bool


async def cpu_run(factory: ServiceFactory, url: str, cfg: BenchConfig) -> CpuRun:
    """Speak ``cfg.cpu_replies`` replies back to back and measure process CPU."""
    rate = cfg.sample_rate
    replies = CPU_REPLIES[: cfg.cpu_replies]
    last = expected_audio(replies[-1].split(". ")[-1], rate)
    session = Session(factory(url, rate), rate)
    await session.start()
    try:
        # Everything the check needs is prepared before the clock starts.
        enough = int(0.9 * sum(expected_reply_bytes(r, rate) for r in replies))
        frames = [f for r in replies for f in llm_reply(r)]
        await asyncio.sleep(cfg.warmup_s)
        # An idle, connected service first: what it costs between replies.
        gc.collect()
        idle0, idle_wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(cfg.idle_s)
        idle = (time.process_time() - idle0) / (time.perf_counter() - idle_wall0)
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await session.send(frames)

        def done() -> bool:
            # The last sentence of the last reply ends the run. The byte count
            # comes first, so the check costs next to nothing while measuring.
            return (
                session.out.audio_bytes >= enough
                and _joined(session.out.audio()[-40:]).find(last) >= 0
            )

        timeout = 10 + 4 * len(replies)  # Pipecat's service idles 3 s per turn
        if not await session.out.wait_until(done, timeout):
            raise BenchError(f"the last reply did not finish within {timeout} s")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await _finish(session)
    audio_s = seconds(session.out.audio_bytes, rate)
    return CpuRun(
        cpu_s=cpu,
        audio_s=audio_s,
        wall_s=wall,
        cpu_ms_per_audio_s=1000 * cpu / audio_s,
        idle_cpu_ms_per_s=1000 * idle,
        server_in_process=cfg.server_in_process,
    )


@dataclass
class LoadStep:
    """N sessions speaking at once.

    Attributes:
        sessions: N.
        kept_up: Every reply came out in full, and every session's audio came
            at least as fast as real time (within the slack) from its first
            audio frame on.
        worst_lag_ms: Largest ``(t - t_first_audio) - audio pushed before t``
            over every audio frame of every session.
        incomplete: Sessions whose reply did not come out in full in time.
        first_audio_median_ms: LLM frames sent to first audio out, median over
            the sessions (not part of "kept up"; shows start-up under load).
        first_audio_max_ms: The same, worst session.
        wall_s: Time the step took.
    """

    sessions: int
    kept_up: bool
    worst_lag_ms: float
    incomplete: int
    first_audio_median_ms: float
    first_audio_max_ms: float
    wall_s: float


async def load_step(factory: ServiceFactory, url: str, n: int, cfg: BenchConfig) -> LoadStep:
    """Run ``n`` pipelines in this process, each speaking ``cfg.load_reply``."""
    rate = cfg.sample_rate
    started = time.perf_counter()
    expected = expected_reply_bytes(cfg.load_reply, rate)
    # A service may let the server join two sentences into one segment, which
    # drops one leading silence; 5 % covers that without calling a cut reply done.
    target = int(0.95 * expected)
    timeout = 1.5 * seconds(expected, rate) + cfg.load_stagger_s + 5
    sessions = [Session(factory(url, rate), rate) for _ in range(n)]
    sent_at: list[float] = [math.nan] * n

    async def speak(i: int, session: Session) -> bool:
        # Replies start spread over the stagger window, as real calls would;
        # the same instant for all would measure a synthetic stampede.
        await asyncio.sleep(cfg.load_stagger_s * i / n)
        sent_at[i] = time.perf_counter()
        await session.send(llm_reply(cfg.load_reply))
        return await session.out.wait_until(lambda: session.out.audio_bytes >= target, timeout)

    try:
        await asyncio.gather(*(s.start(timeout_s=30 + n) for s in sessions))
        # Every socket opens before the first word, as in a warmed-up bot.
        await asyncio.sleep(cfg.warmup_s + 0.01 * n)
        complete = await asyncio.gather(*(speak(i, s) for i, s in enumerate(sessions)))
        ended = time.perf_counter()
    finally:
        await asyncio.gather(*(s.cancel() for s in sessions), return_exceptions=True)
    worst = 0.0
    first_audio: list[float] = []
    for i, (session, done) in enumerate(zip(sessions, complete, strict=True)):
        audio = session.out.audio()
        if not audio:
            worst = math.inf
            continue
        t_first = audio[0].t
        first_audio.append(1000 * (t_first - sent_at[i]))
        received = 0
        for stamped in audio:
            worst = max(worst, (stamped.t - t_first) - seconds(received, rate))
            received += len(stamped.frame.audio)  # type: ignore[attr-defined]
        if not done:
            worst = max(worst, (ended - t_first) - seconds(received, rate))
    incomplete = complete.count(False)
    return LoadStep(
        sessions=n,
        kept_up=incomplete == 0 and worst <= cfg.keep_up_slack_s,
        worst_lag_ms=1000 * worst,
        incomplete=incomplete,
        first_audio_median_ms=statistics.median(first_audio) if first_audio else math.nan,
        first_audio_max_ms=max(first_audio) if first_audio else math.nan,
        wall_s=time.perf_counter() - started,
    )


# ---------------------------------------------------------------- results


@dataclass
class ServiceResult:
    """Everything measured for one service."""

    service: str
    barge_in: list[BargeInRun] = field(default_factory=list)
    back_to_back: list[BackToBackRun] = field(default_factory=list)
    cpu: CpuRun | None = None
    load: list[LoadStep] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def median(self, metric: str) -> float | None:
        """Median of a per-run metric (``None`` when no run succeeded)."""
        values = self.values(metric)
        return statistics.median(values) if values else None

    def values(self, metric: str) -> list[float]:
        """A per-run metric of every successful run."""
        runs: Sequence[Any]
        if metric in BargeInRun.__dataclass_fields__:
            runs = self.barge_in
        elif metric in BackToBackRun.__dataclass_fields__:
            runs = self.back_to_back
        else:
            raise KeyError(metric)
        return [getattr(r, metric) for r in runs]

    @property
    def max_sessions(self) -> int | None:
        """Largest N at which every trial kept up, if any N did."""
        steps = sorted({s.sessions for s in self.load})
        kept = [n for n in steps if all(s.kept_up for s in self.load if s.sessions == n)]
        return max(kept) if kept else None


@dataclass
class BenchResult:
    """Both services' results and the settings they ran under."""

    config: BenchConfig
    results: dict[str, ServiceResult]
    wall_s: float = 0.0


async def _attempt(result: ServiceResult, what: str, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run one measurement; note a failure (with its cause) instead of stopping."""
    try:
        return await work()
    except (BenchError, TimeoutError, OSError, RuntimeError) as e:
        result.problems.append(f"{what}: {type(e).__name__}: {e}")
        return None


async def _load_ladder(
    results: dict[str, ServiceResult],
    url: str,
    cfg: BenchConfig,
    progress: Callable[[str], None],
) -> None:
    """Step N up for both services until each falls behind (or time runs out).

    At every N the services take turns, trial after trial, so both see the
    same machine; a service keeps up at N only if every trial does, because
    near the limit one lucky trial proves little.
    """
    started = time.perf_counter()
    climbing = dict(SERVICES)
    for n in cfg.load_steps:
        if not climbing:
            break
        if time.perf_counter() - started > cfg.load_budget_s:
            for name in climbing:
                results[name].problems.append(f"load: stopped before N={n} (time budget)")
            break
        for trial in range(cfg.load_trials):
            order = list(climbing.items())
            for name, factory in order if trial % 2 == 0 else order[::-1]:
                progress(f"load: {name}, N={n}, trial {trial + 1}")
                step = await _attempt(
                    results[name],
                    f"load N={n}",
                    lambda f=factory, n=n: load_step(f, url, n, cfg),
                )
                if step is not None:
                    results[name].load.append(step)
        for name in list(climbing):
            trials = [s for s in results[name].load if s.sessions == n]
            if len(trials) < cfg.load_trials or not all(s.kept_up for s in trials):
                del climbing[name]  # more sessions would not keep up either


async def run_benchmark(cfg: BenchConfig, progress: Callable[[str], None] = print) -> BenchResult:
    """Run every scenario for both services; the core of the command line."""
    started = time.perf_counter()
    results = {name: ServiceResult(name) for name in SERVICES}
    async with serve(cfg.latency_server, in_process=cfg.server_in_process) as server:
        url = server.ws_base_url
        for i in range(cfg.runs):
            # Alternate which service goes first, so neither always runs on a
            # freshly quiet machine.
            order = list(SERVICES.items()) if i % 2 == 0 else list(SERVICES.items())[::-1]
            for name, factory in order:
                r = results[name]
                progress(f"run {i + 1}/{cfg.runs}: {name}")
                run = await _attempt(
                    r, f"barge-in run {i + 1}", lambda f=factory: barge_in_run(f, url, cfg)
                )
                if run is not None:
                    r.barge_in.append(run)
                b2b = await _attempt(
                    r, f"back-to-back run {i + 1}", lambda f=factory: back_to_back_run(f, url, cfg)
                )
                if b2b is not None:
                    r.back_to_back.append(b2b)
        for name, factory in SERVICES.items():
            progress(f"CPU: {name}")
            results[name].cpu = await _attempt(
                results[name], "CPU run", lambda f=factory: cpu_run(f, url, cfg)
            )
    async with serve(cfg.load_server, in_process=cfg.server_in_process) as server:
        await _load_ladder(results, server.ws_base_url, cfg, progress)
    return BenchResult(cfg, results, time.perf_counter() - started)


# ----------------------------------------------------------------- report


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.1f}"
    return f"{med:.1f} ({min(values):.1f}-{max(values):.1f})"


def _advantage(ours: float | None, theirs: float | None, higher_is_better: bool = False) -> str:
    """How many times better ours is (> 1: ours is better)."""
    if ours is None or theirs is None:
        return "n/a"
    better, worse = (ours, theirs) if higher_is_better else (theirs, ours)
    if better == worse:
        return "1.0x (equal)"
    if worse == 0:
        return "∞ (ours 0)" if not higher_is_better else "n/a"
    return f"{better / worse:.1f}x"


def format_table(bench: BenchResult) -> str:
    """The Markdown table of both services and the ratio."""
    ours, theirs = bench.results[OURS], bench.results[THEIRS]
    rows: list[tuple[str, str, str, str]] = []

    def per_run(label: str, metric: str) -> None:
        rows.append(
            (
                label,
                _fmt(ours.values(metric)),
                _fmt(theirs.values(metric)),
                _advantage(ours.median(metric), theirs.median(metric)),
            )
        )

    per_run("1. InterruptionFrame time inside the TTS service (ms)", "interruption_in_service_ms")
    per_run("2. Interrupted audio pushed after the InterruptionFrame (ms)", "stale_audio_ms")
    per_run("3. Barge-in → first audio of the next reply (ms)", "barge_in_to_next_audio_ms")
    per_run("4. Gap between back-to-back replies (ms)", "gap_ms")

    def cpu(r: ServiceResult) -> float | None:
        return r.cpu.cpu_ms_per_audio_s if r.cpu else None

    rows.append(
        (
            "5. Client CPU per second of audio (ms)",
            f"{cpu(ours):.1f}" if cpu(ours) is not None else "n/a",
            f"{cpu(theirs):.1f}" if cpu(theirs) is not None else "n/a",
            _advantage(cpu(ours), cpu(theirs)),
        )
    )

    def sessions(r: ServiceResult) -> str:
        n = r.max_sessions
        if n is None:
            return "none kept up" if r.load else "n/a"
        # Never fell behind: the limit lies above the largest N tried.
        return f">={n}" if n == max(s.sessions for s in r.load) else str(n)

    rows.append(
        (
            "6. Concurrent sessions per process keeping real time",
            sessions(ours),
            sessions(theirs),
            _advantage(
                float(ours.max_sessions or 0),
                float(theirs.max_sessions or 0),
                higher_is_better=True,
            )
            + (" (limit not reached)" if ">=" in sessions(ours) + sessions(theirs) else ""),
        )
    )
    header = ("Metric", OURS, THEIRS, "ours better by")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:"]) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_settings(cfg: BenchConfig) -> str:
    """The settings a run used, for the report."""
    where = "in this process" if cfg.server_in_process else "a child process"
    return "\n".join(
        [
            f"sample rate {cfg.sample_rate} Hz, tone backend, server in {where}, 127.0.0.1",
            f"metrics 1-5 server: {_switches(cfg.latency_server)}",
            f"metric 6 server:    {_switches(cfg.load_server)}",
            f"runs per latency metric: {cfg.runs} (median, min-max in brackets); "
            f"CPU: {cfg.cpu_replies} replies back to back; load: "
            f"{', '.join(map(str, cfg.load_steps))} sessions x {cfg.load_trials} trial(s), "
            f"replies started over {cfg.load_stagger_s:g} s, "
            f"{expected_reply_audio_s(cfg.load_reply, cfg.sample_rate):.1f} s of audio each, "
            f"slack {1000 * cfg.keep_up_slack_s:.0f} ms",
        ]
    )


def _switches(switches: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in switches.items())


def format_details(bench: BenchResult) -> str:
    """Supporting numbers: load steps, CPU spans, problems."""
    lines: list[str] = []
    for r in bench.results.values():
        lines.append(f"{r.service}:")
        if r.cpu:
            lines.append(
                f"  CPU: {r.cpu.cpu_s:.2f} s CPU for {r.cpu.audio_s:.1f} s of audio "
                f"over {r.cpu.wall_s:.1f} s wall; idle {r.cpu.idle_cpu_ms_per_s:.1f} ms CPU/s"
            )
        steps = ", ".join(
            f"N={s.sessions}: {'ok' if s.kept_up else 'behind'} "
            f"(worst lag {s.worst_lag_ms:.0f} ms, first audio "
            f"{s.first_audio_median_ms:.0f}/{s.first_audio_max_ms:.0f} ms median/max"
            + (f", {s.incomplete} incomplete" if s.incomplete else "")
            + ")"
            for s in r.load
        )
        lines.append(f"  load: {steps or 'n/a'}")
        for metric, label in (
            ("stale_by_label_ms", "after the interruption, labelled with the interrupted context"),
            ("pushed_while_held_ms", "pushed while the InterruptionFrame was inside"),
            ("heard_before_ms", "of the interrupted reply before the barge-in"),
            ("reply_a_audio_ms", "of reply A before reply B (back to back)"),
        ):
            values = r.values(metric)
            if values:
                lines.append(f"  audio {label} (ms): {_fmt(values)}")
        for p in r.problems:
            lines.append(f"  problem: {p}")
    return "\n".join(lines)


def to_json(bench: BenchResult) -> dict[str, Any]:
    """Everything, per run, for ``--json``."""
    return {
        "config": asdict(bench.config),
        "wall_s": bench.wall_s,
        "results": {name: asdict(r) for name, r in bench.results.items()},
        "table": format_table(bench),
    }


# ------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and sessions (~1 min)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # child-process server
    args = parser.parse_args(argv)
    # Debug logging costs CPU per frame and would be measured; warnings stay.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if args.serve:
        asyncio.run(_serve_forever(json.loads(args.serve)))
        return 0
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    print(format_settings(cfg), flush=True)
    bench = asyncio.run(
        run_benchmark(cfg, progress=lambda m: print(f"  … {m}", file=sys.stderr, flush=True))
    )
    print()
    print(format_table(bench))
    print()
    print(format_details(bench))
    print(f"\nfinished in {bench.wall_s:.0f} s on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(to_json(bench), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
