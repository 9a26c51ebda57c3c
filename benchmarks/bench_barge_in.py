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
import itertools
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

import numpy as np
from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
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
#: The reply after the barge-in. One short sentence with no clause in it, so
#: both services send it whole, the server speaks it as one segment, and its
#: exact audio is known in advance (see ``expected_audio``). (Ours would send
#: the first clause of "Of course, here are ..." on its own: its audio would
#: then hold one more segment start, and the byte match would miss it.)
NEXT_REPLY = "Here are the desserts we bake."

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

#: The two-reply exchange whose words are counted under each server
#: segmentation (metric 8). Reply A is 144 characters (under the 200 that
#: merges sentences, so it becomes one segment there); every sentence is over
#: the 30 characters that split sentences. No two words share a tone.
WORDS_REPLY_A = (
    "Your table for four is booked at eight tonight. "
    "We saved the quiet corner by the window for your party. "
    "Parking in the garage is free after six."
)
WORDS_REPLY_B = (
    "Is there anything else I can help with today? "
    "I can text the directions and the menu to your phone."
)

#: What each service says right after its idle period (metric 9).
AFTER_IDLE_REPLY = "Welcome back. The kitchen is still open for another hour."


# ----------------------------------------------------------------- config


@dataclass(frozen=True)
class Segmentation:
    """One way the server may cut a context's text into segments (metric 8).

    Attributes:
        label: The sub-row's name.
        switches: ``ServerBehaviour`` fields that make the server cut that way.
        token_pause: The LLM token stream pauses in the middle of every sentence.
    """

    label: str
    switches: dict[str, Any]
    token_pause: bool = False


SEGMENTATIONS: tuple[Segmentation, ...] = (
    Segmentation("default segments (max 120 chars)", {}),
    Segmentation("split sentences (max_chunk_chars=30)", {"max_chunk_chars": 30}),
    Segmentation("merged sentences (min_sentence_chars=200)", {"min_sentence_chars": 200}),
    Segmentation(
        "delay-released fragments (80 ms, tokens pause mid-sentence)",
        {"buffer_delay_override_ms": 80},
        token_pause=True,
    ),
)

_ECHO_SERVER_TINY = {
    "handshake_delay_ms": 50,
    "ttfb_ms": 50,
    "chunk_ms": 150,
    "chunk_interval_ms": 150,
    "echo_external_request_id": True,
    "cancel_stops_inflight": False,
}


@dataclass(frozen=True)
class HeldCompletes:
    """A metric 4 sub-row: a server that holds back ``complete``."""

    key: str
    label: str
    switches: dict[str, Any]


#: The documented ``complete_backoff_ms`` default (4 s) applies to every one;
#: our client asks for 0, which these servers do not grant.
HELD_COMPLETES = (
    HeldCompletes(
        "4b",
        "server ignores complete_backoff_ms (every complete 4 s late)",
        {"complete_backoff_with_context": "ignore"},
    ),
    HeldCompletes(
        "4c",
        "server refuses complete_backoff_ms beside a context_id",
        {"complete_backoff_with_context": "refuse"},
    ),
    HeldCompletes(
        "4d",
        "account concurrency 1, every complete 4 s late",
        {"complete_backoff_with_context": "ignore", "max_active_contexts": 1},
    ),
)


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
        echo_server: Server switches for metric 7: request ids echoed,
            ``cancel_request`` leaves the segment in flight streaming, audio
            at real time.
        words_server: Server switches shared by every segmentation of metric 8.
        segmentations: Metric 8's sub-rows: a label and the switches that
            give the server that segmentation.
        token_pause_s: Pause in the middle of every sentence of the LLM token
            stream, for the segmentations that ask for one.
        words_concurrently: Run metric 8's segmentations at once rather than
            one after the other (only words are counted, not time).
        words_quiet_s: A two-reply exchange is over once no audio came for
            this long (longer than Pipecat's 3 s end-of-turn wait).
        held_completes: Metric 4's sub-rows: servers that hold ``complete``
            back for the documented 4 s whatever the client asks (each on
            top of ``latency_server``).
        idle_timeout_s: Server idle timeout for metric 9 (both services face it).
        idle_periods: How many idle timeouts metric 9 waits for.
        idle_server: Server switches for metric 9 (besides the idle timeout
            and ``ping_supported``).
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
    echo_server: dict[str, Any] = field(
        default_factory=lambda: {
            "handshake_delay_ms": 100,
            "ttfb_ms": 150,
            "chunk_ms": 150,
            "chunk_interval_ms": 150,  # real time: the segment is still in flight
            "echo_external_request_id": True,
            "cancel_stops_inflight": False,
        }
    )
    words_server: dict[str, Any] = field(
        default_factory=lambda: {
            "handshake_delay_ms": 100,
            "ttfb_ms": 150,
            "chunk_ms": 150,
            "chunk_interval_ms": 30,
        }
    )
    segmentations: tuple[Segmentation, ...] = SEGMENTATIONS
    token_pause_s: float = 0.25
    words_concurrently: bool = False
    words_quiet_s: float = 5.0
    held_completes: tuple[HeldCompletes, ...] = HELD_COMPLETES
    idle_timeout_s: int = 3
    idle_periods: int = 20
    idle_server: dict[str, Any] = field(
        default_factory=lambda: {
            "handshake_delay_ms": 100,
            "ttfb_ms": 150,
            "chunk_ms": 150,
            "chunk_interval_ms": 30,
        }
    )

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
            words_concurrently=True,
            idle_periods=4,
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
            echo_server={**_ECHO_SERVER_TINY},
            words_concurrently=True,
            held_completes=HELD_COMPLETES[1:2],
            idle_periods=1,
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
async def serve(switches: dict[str, Any], *, in_process: bool) -> AsyncIterator[HasUrl]:
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


async def _serve_forever(switches: dict[str, Any]) -> None:
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


def in_turn(services: dict[str, ServiceFactory], run: int) -> list[tuple[str, ServiceFactory]]:
    """The services in the order of run ``run``: alternating who goes first,
    so neither always runs on a freshly quiet machine."""
    order = list(services.items())
    return order if run % 2 == 0 else order[::-1]


#: Pipecat's ``SmallestTTSService`` sends its keep-alive every 30 s, half the
#: documented 60 s idle timeout (the interval is fixed in its ``_connect``).
THEIRS_KEEPALIVE_S = 30.0
DOCUMENTED_IDLE_TIMEOUT_S = 60.0


class _TimeScaledSmallest(SmallestTTSService):
    """Pipecat's service with its keep-alive clock scaled to a shorter idle timeout.

    Metric 9 compresses an idle hour by shortening the server's idle timeout;
    Pipecat's 30 s keep-alive is scaled by the same factor, so it keeps the
    same ratio to the timeout (one half) as it has against the real 60 s.
    Nothing else is changed.
    """

    def __init__(self, *, time_scale: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._time_scale = time_scale

    def _create_keepalive_task(self, interval: float) -> None:
        super()._create_keepalive_task(interval * self._time_scale)


def idle_factories(timeout_s: int) -> dict[str, ServiceFactory]:
    """Both services set up to face an idle timeout of ``timeout_s``.

    Ours asks for it with ``?timeout=`` (its own keep-alive then runs at a
    third of it, as it does at the default 60 s); Pipecat's asks for nothing,
    so the server's default (set to the same ``timeout_s``) applies, and its
    keep-alive is scaled to the same share of the timeout as at 60 s.
    """

    def ours(url: str, sample_rate: int) -> TTSService:
        return WavesTTSService(
            api_key=API_KEY, base_url=url, sample_rate=sample_rate, idle_timeout_s=timeout_s
        )

    def theirs(url: str, sample_rate: int) -> TTSService:
        return _TimeScaledSmallest(
            time_scale=timeout_s / DOCUMENTED_IDLE_TIMEOUT_S,
            api_key=API_KEY,
            base_url=url,
            sample_rate=sample_rate,
            settings=SmallestTTSService.Settings(voice="meher"),
        )

    return {OURS: ours, THEIRS: theirs}


# ------------------------------------------------------------- pipelines


@dataclass
class Stamped:
    """A frame and when it went past a recorder (``time.perf_counter()``)."""

    t: float
    frame: Frame


class Recorder(FrameProcessor):
    """Passes every frame on and notes when each downstream frame went by.

    Direct mode: the frame is stamped and handed on in the same call, so the
    recorder adds no queue hop of its own to what is measured. ``ErrorFrame``s
    are also kept going either way: the service pushes them upstream (through
    the in-recorder) or downstream (through the out-recorder).
    """

    def __init__(self, name: str) -> None:
        """Create a recorder called ``name``."""
        super().__init__(name=name, enable_direct_mode=True)
        self.frames: list[Stamped] = []
        self.errors: list[Stamped] = []
        self.audio_bytes = 0
        self.last_audio_t = math.nan
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Stamp downstream frames and every error, then pass every frame on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, ErrorFrame):
            self.errors.append(Stamped(time.perf_counter(), frame))
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(Stamped(time.perf_counter(), frame))
            if isinstance(frame, TTSAudioRawFrame):
                self.audio_bytes += len(frame.audio)
                self.last_audio_t = self.frames[-1].t
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

    async def send(self, frames: Sequence[Frame | float]) -> None:
        """Queue ``frames`` at the head of the pipeline, in order.

        A number among them is a pause of that many seconds (an LLM that
        stalls mid-stream); otherwise the frames go without pauses.
        """
        for frame in frames:
            if isinstance(frame, Frame):
                await self.worker.queue_frame(frame)
            else:
                await asyncio.sleep(frame)

    @property
    def errors(self) -> list[Stamped]:
        """Every ``ErrorFrame`` the service pushed, either way, in time order."""
        return sorted(self.inp.errors + self.out.errors, key=lambda s: s.t)

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


def llm_reply(text: str, pause_s: float = 0.0) -> list[Frame | float]:
    """Frames an LLM produces for ``text``: start, one frame per word, end.

    With ``pause_s``, the stream stalls that long in the middle of every
    sentence (a number in the list; see :meth:`Session.send`).
    """
    words = text.split(" ")
    tokens = [w + " " for w in words[:-1]] + [words[-1]]
    frames: list[Frame | float] = [LLMFullResponseStartFrame()]
    sentence: list[str] = []
    for n, token in enumerate(tokens, 1):
        sentence.append(token)
        if token.rstrip().endswith((".", "?", "!")) or n == len(tokens):
            half = len(sentence) // 2
            for i, t in enumerate(sentence):
                if pause_s > 0 and i == half and half > 0:
                    frames.append(pause_s)
                frames.append(LLMTextFrame(t))
            sentence = []
    frames.append(LLMFullResponseEndFrame())
    return frames


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


# ------------------------------------------------------------ words heard


def words_of(text: str) -> list[str]:
    """Words as the tone backend renders them: runs of non-space characters."""
    return text.split()


def _tones(pcm: bytes, sample_rate: int) -> list[bytes]:
    """Cut PCM16 audio into its tones: runs of sound between silences.

    The tone backend puts a silence of fixed length between words (and at the
    start of every segment) and a word's own samples are never silent for long,
    so any run of zeros at least half that length separates two words. Each
    tone is returned from its first to its last non-zero sample.
    """
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    loud = np.flatnonzero(samples)
    if loud.size == 0:
        return []
    min_gap = _gap_samples(sample_rate) // 2
    breaks = np.flatnonzero(np.diff(loud) > min_gap)
    starts = [int(loud[0]), *(int(loud[b + 1]) for b in breaks)]
    ends = [*(int(loud[b]) for b in breaks), int(loud[-1])]
    return [samples[a : b + 1].tobytes() for a, b in zip(starts, ends, strict=True)]


def _gap_samples(sample_rate: int) -> int:
    """Length of the tone backend's silence (what it renders for no words)."""
    silence = ToneBackend().synthesize("", voice_id="", speed=1.0, sample_rate=sample_rate)
    return len(silence.pcm) // 2


def transcribe(
    pcm: bytes, sample_rate: int, vocabulary: Sequence[str], also: Sequence[str] = ()
) -> list[str]:
    """Name every tone of ``pcm`` with the word of ``vocabulary`` it renders.

    The tone backend renders a word to the same samples wherever it stands, so
    a tone is matched to a word exactly, byte for byte. A tone that matches no
    word (a word cut off, or not in the vocabulary) reads ``"<?>"``. Words of
    ``also`` are recognised too, unless they sound like a vocabulary word.

    Raises:
        ValueError: Two words of ``vocabulary`` render alike, so the audio
            could not tell them apart.
    """
    known: dict[bytes, str] = {}
    for word in set(vocabulary):
        tone = _tone_of(word, sample_rate)
        if known.setdefault(tone, word) != word:
            raise ValueError(f"{word!r} and {known[tone]!r} sound alike")
    for word in set(also):
        known.setdefault(_tone_of(word, sample_rate), word)
    return [known.get(tone, "<?>") for tone in _tones(pcm, sample_rate)]


def _tone_of(word: str, sample_rate: int) -> bytes:
    synthesis = ToneBackend().synthesize(word, voice_id="", speed=1.0, sample_rate=sample_rate)
    (tone,) = _tones(synthesis.pcm, sample_rate)
    return tone


def fused_pairs(words: Sequence[str]) -> list[str]:
    """Every two neighbouring words written without the space between them.

    That is what the server speaks when a client sends sentences without
    the space between them and the server joins them into one segment.
    """
    return [a + b for a, b in itertools.pairwise(words)]


def matched_words(written: Sequence[str], heard: Sequence[str]) -> list[bool]:
    """Which written words were heard, in order (a longest common subsequence).

    A word heard twice, out of order, or cut counts once at most; a word never
    heard counts not at all.
    """
    n, m = len(written), len(heard)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = (
                best[i + 1][j + 1] + 1
                if written[i] == heard[j]
                else max(best[i + 1][j], best[i][j + 1])
            )
    found = [False] * n
    i = j = 0
    while i < n and j < m:
        if written[i] == heard[j]:
            found[i] = True
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return found


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


async def barge_in_run(
    factory: ServiceFactory, url: str, cfg: BenchConfig, reply_timeout_s: float = 10.0
) -> BargeInRun:
    """Talk over a long reply, then ask for the next one at once.

    Every run is a fresh pipeline and service, so the barge-in is the first
    of its session: nothing about the server was learnt from an earlier one.
    """
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

        if not await session.out.wait_until(next_reply_arrived, reply_timeout_s):
            raise BenchError(
                f"the next reply's audio did not come out intact within {reply_timeout_s:g} s"
            )
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
class WordsRun:
    """A two-reply exchange under one server segmentation (metric 8).

    Attributes:
        segmentation: The segmentation's label.
        written: Words of both replies.
        spoken: Written words heard, in order (see :func:`matched_words`).
        spoken_a: Of those, reply A's.
        spoken_b: Of those, reply B's.
        written_a: Words of reply A.
        extra: Tones heard that are not one of the written words in order:
            repeats, cut words, anything else.
        extra_heard: What those tones were: a written word (a repeat), two
            neighbouring words fused into one (sentences sent without the
            space between them and joined by the server), or ``"<?>"``.
        errors: ``ErrorFrame``s pushed (either way) during the exchange.
        error_messages: Their texts.
        wall_s: LLM frames sent to the last audio.
    """

    segmentation: str
    written: int
    spoken: int
    spoken_a: int
    spoken_b: int
    written_a: int
    extra: int
    extra_heard: list[str]
    errors: int
    error_messages: list[str]
    wall_s: float


async def words_run(
    factory: ServiceFactory, url: str, cfg: BenchConfig, seg: Segmentation
) -> WordsRun:
    """Send replies A and B back to back and count the words that come out."""
    rate = cfg.sample_rate
    pause = cfg.token_pause_s if seg.token_pause else 0.0
    # One segment per reply is the least audio the two can make (every
    # segment starts with a silence), so reaching it means both are through.
    enough = len(expected_audio(WORDS_REPLY_A, rate)) + len(expected_audio(WORDS_REPLY_B, rate))
    session = Session(factory(url, rate), rate)
    await session.start()
    try:
        await asyncio.sleep(cfg.warmup_s)
        sent = time.perf_counter()
        await session.send([*llm_reply(WORDS_REPLY_A, pause), *llm_reply(WORDS_REPLY_B, pause)])
        await _until_quiet(session, sent, enough, cfg.words_quiet_s)
    finally:
        await _finish(session)
    return _count_words(session, seg.label, sent)


async def _until_quiet(session: Session, since: float, enough: int, quiet_s: float) -> None:
    """Wait until the service has stopped producing audio.

    Once ``enough`` bytes came, half a second without audio ends the wait
    (anything still to come would be a repeat); before that, ``quiet_s``
    without audio does: a reply held back (Pipecat's 3 s end of turn) must
    not be taken for a lost one. A limit stops a service that never goes quiet.
    """
    limit = since + 60.0
    while True:
        now = time.perf_counter()
        last = session.out.last_audio_t
        last = since if math.isnan(last) else last
        quiet = 0.5 if session.out.audio_bytes >= enough else quiet_s
        if now - last >= quiet or now >= limit:
            return
        await asyncio.sleep(0.05)


def _count_words(session: Session, label: str, since: float) -> WordsRun:
    rate = session.service.sample_rate
    written_a, written_b = words_of(WORDS_REPLY_A), words_of(WORDS_REPLY_B)
    written = written_a + written_b
    heard = transcribe(_joined(session.out.audio()), rate, written, also=fused_pairs(written))
    found = matched_words(written, heard)
    unmatched = list(heard)
    for word in (w for w, f in zip(written, found, strict=True) if f):
        unmatched.remove(word)
    errors = session.errors
    last = session.out.last_audio_t
    return WordsRun(
        segmentation=label,
        written=len(written),
        spoken=sum(found),
        spoken_a=sum(found[: len(written_a)]),
        spoken_b=sum(found[len(written_a) :]),
        written_a=len(written_a),
        extra=len(heard) - sum(found),
        extra_heard=unmatched,
        errors=len(errors),
        error_messages=[str(e.frame.error) for e in errors],  # type: ignore[attr-defined]
        wall_s=(last - since) if not math.isnan(last) else math.nan,
    )


@dataclass
class IdleRun:
    """A session left idle for several server idle timeouts, then asked to speak.

    Attributes:
        ping_supported: The server answered pings (else it refused them).
        timeout_s: The server's idle timeout the session faced.
        idle_s: The window errors were counted over: whole timeout periods,
            from a quarter period after the pipeline started to the reply.
        startup_errors: ``ErrorFrame``s pushed before that window.
        sockets_opened: Connections the service opened in the window (its
            ``on_connected`` event): what keeping ready costs it.
        errors: ``ErrorFrame``s pushed (either way) in the window.
        errors_per_hour: ``errors`` per timeout period, times the periods in
            an hour at the documented 60 s timeout (that is, times 60).
        error_messages: Their texts (distinct, with counts).
        reply_written: Words of the reply sent after the idle period.
        reply_spoken: Of those, heard in order.
        reply_errors: ``ErrorFrame``s pushed while that reply was spoken.
        reply_error_messages: Their texts.
    """

    ping_supported: bool
    timeout_s: float
    idle_s: float
    startup_errors: int
    sockets_opened: int
    errors: int
    errors_per_hour: float
    error_messages: dict[str, int]
    reply_written: int
    reply_spoken: int
    reply_errors: int
    reply_error_messages: list[str]


async def idle_run(
    factory: ServiceFactory, url: str, cfg: BenchConfig, ping_supported: bool
) -> IdleRun:
    """Leave a session idle for ``cfg.idle_periods`` timeouts, then speak one reply."""
    rate = cfg.sample_rate
    service = factory(url, rate)
    opened: list[float] = []

    @service.event_handler("on_connected")
    async def _on_connected(*args: Any) -> None:
        opened.append(time.perf_counter())

    session = Session(service, rate)
    await session.start()
    try:
        # Errors are counted over a window of whole timeout periods that
        # starts a quarter period in, so that neither edge races a service's
        # periodic message (Pipecat's keep-alive comes every half period,
        # counted from its connection): the count is the same on every run.
        await asyncio.sleep(cfg.idle_timeout_s / 4)
        early = session.errors
        started = time.perf_counter()
        await asyncio.sleep(cfg.idle_periods * cfg.idle_timeout_s)
        sent = time.perf_counter()
        idle_errors = [e for e in session.errors if e.t >= started]
        await session.send(llm_reply(AFTER_IDLE_REPLY))
        await _until_quiet(
            session, sent, len(expected_audio(AFTER_IDLE_REPLY, rate)), cfg.words_quiet_s
        )
    finally:
        await _finish(session)
    reply_errors = [e for e in session.errors if e.t >= sent]
    written = words_of(AFTER_IDLE_REPLY)
    heard = transcribe(_joined(session.out.audio()), rate, written)
    idle_s = sent - started
    periods = idle_s / cfg.idle_timeout_s
    messages: dict[str, int] = {}
    for e in idle_errors:
        text = str(e.frame.error)  # type: ignore[attr-defined]
        messages[text] = messages.get(text, 0) + 1
    return IdleRun(
        ping_supported=ping_supported,
        timeout_s=cfg.idle_timeout_s,
        idle_s=idle_s,
        startup_errors=len(early),
        sockets_opened=sum(started <= t < sent for t in opened),
        errors=len(idle_errors),
        errors_per_hour=len(idle_errors) / periods * (3600 / DOCUMENTED_IDLE_TIMEOUT_S),
        error_messages=messages,
        reply_written=len(written),
        reply_spoken=sum(matched_words(written, heard)),
        reply_errors=len(reply_errors),
        reply_error_messages=[str(e.frame.error) for e in reply_errors],  # type: ignore[attr-defined]
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
    echo_barge_in: list[BargeInRun] = field(default_factory=list)
    held_back_to_back: dict[str, list[BackToBackRun]] = field(default_factory=dict)
    words: list[WordsRun] = field(default_factory=list)
    idle: list[IdleRun] = field(default_factory=list)
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
            for name, factory in in_turn(climbing, trial):
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
            for name, factory in in_turn(SERVICES, i):
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
    await _held_completes(results, cfg, progress)
    await _echo_barge_ins(results, cfg, progress)
    await _words_under_segmentations(results, cfg, progress)
    await _idle_sessions(results, cfg, progress)
    async with serve(cfg.load_server, in_process=cfg.server_in_process) as server:
        await _load_ladder(results, server.ws_base_url, cfg, progress)
    return BenchResult(cfg, results, time.perf_counter() - started)


async def _held_completes(
    results: dict[str, ServiceResult], cfg: BenchConfig, progress: Callable[[str], None]
) -> None:
    """Metric 4b-d: back-to-back replies on servers that hold ``complete`` back."""
    for held in cfg.held_completes:
        async with serve(
            {**cfg.latency_server, **held.switches}, in_process=cfg.server_in_process
        ) as server:
            url = server.ws_base_url
            for i in range(cfg.runs):
                for name, factory in in_turn(SERVICES, i):
                    progress(f"back to back, {held.key} {i + 1}/{cfg.runs}: {name}")
                    run = await _attempt(
                        results[name],
                        f"back-to-back run {i + 1}, {held.label}",
                        lambda f=factory, u=url: back_to_back_run(f, u, cfg),
                    )
                    if run is not None:
                        results[name].held_back_to_back.setdefault(held.key, []).append(run)


async def _echo_barge_ins(
    results: dict[str, ServiceResult], cfg: BenchConfig, progress: Callable[[str], None]
) -> None:
    """Metric 7: the first barge-in of fresh sessions on the echoing server."""
    async with serve(cfg.echo_server, in_process=cfg.server_in_process) as server:
        url = server.ws_base_url
        for i in range(cfg.runs):
            for name, factory in in_turn(SERVICES, i):
                progress(f"echo barge-in {i + 1}/{cfg.runs}: {name}")
                # Real-time audio: a service that waited for the interrupted
                # reply to play out would need the whole of it (about 14 s).
                run = await _attempt(
                    results[name],
                    f"echo barge-in run {i + 1}",
                    lambda f=factory: barge_in_run(f, url, cfg, reply_timeout_s=25.0),
                )
                if run is not None:
                    results[name].echo_barge_in.append(run)


async def _words_under_segmentations(
    results: dict[str, ServiceResult], cfg: BenchConfig, progress: Callable[[str], None]
) -> None:
    """Metric 8: both services at once, one server per segmentation.

    Only words are counted here, not time, so the two services share the
    server and run side by side (and with ``cfg.words_concurrently``, every
    segmentation at once too).
    """

    async def one(seg: Segmentation) -> None:
        progress(f"words: {seg.label}")
        switches = {**cfg.words_server, **seg.switches}
        async with serve(switches, in_process=cfg.server_in_process) as server:
            url = server.ws_base_url
            runs = await asyncio.gather(
                *(
                    _attempt(
                        results[name],
                        f"words, {seg.label}",
                        lambda f=factory: words_run(f, url, cfg, seg),
                    )
                    for name, factory in SERVICES.items()
                )
            )
        for name, run in zip(SERVICES, runs, strict=True):
            if run is not None:
                results[name].words.append(run)

    if cfg.words_concurrently:
        await asyncio.gather(*(one(seg) for seg in cfg.segmentations))
    else:
        for seg in cfg.segmentations:
            await one(seg)
    for r in results.values():
        order = [seg.label for seg in cfg.segmentations]
        r.words.sort(key=lambda w: order.index(w.segmentation))


async def _idle_sessions(
    results: dict[str, ServiceResult], cfg: BenchConfig, progress: Callable[[str], None]
) -> None:
    """Metric 9: both services idle at once, against a server with and without pings.

    The four sessions only wait (and then speak one short reply each), so
    they run side by side rather than one after the other.
    """
    progress(
        f"idle: {cfg.idle_periods} x {cfg.idle_timeout_s} s, pings answered and refused, "
        "both services at once"
    )
    factories = idle_factories(cfg.idle_timeout_s)

    async def one(ping: bool) -> list[IdleRun | None]:
        switches = {**cfg.idle_server, "idle_timeout_s": cfg.idle_timeout_s, "ping_supported": ping}
        async with serve(switches, in_process=cfg.server_in_process) as server:
            url = server.ws_base_url
            return await asyncio.gather(
                *(
                    _attempt(
                        results[name],
                        f"idle, pings {'answered' if ping else 'refused'}",
                        lambda f=factory: idle_run(f, url, cfg, ping),
                    )
                    for name, factory in factories.items()
                )
            )

    for runs in await asyncio.gather(one(True), one(False)):
        for name, run in zip(factories, runs, strict=True):
            if run is not None:
                results[name].idle.append(run)


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
    per_run(
        "4. Gap between back-to-back replies, documented 4 s complete_backoff_ms (ms)", "gap_ms"
    )
    for held in bench.config.held_completes:
        mine = [r.gap_ms for r in ours.held_back_to_back.get(held.key, [])]
        other = [r.gap_ms for r in theirs.held_back_to_back.get(held.key, [])]
        rows.append(
            (
                f"{held.key}. Gap between back-to-back replies, {held.label} (ms)",
                _fmt(mine) if mine else _failed_cell(ours, held.label),
                _fmt(other) if other else _failed_cell(theirs, held.label),
                _advantage(
                    statistics.median(mine) if mine else None,
                    statistics.median(other) if other else None,
                ),
            )
        )

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

    def echo_values(r: ServiceResult) -> list[float]:
        return [run.barge_in_to_next_audio_ms for run in r.echo_barge_in]

    echo_ours, echo_theirs = echo_values(ours), echo_values(theirs)
    rows.append(
        (
            "7. Barge-in → first audio of the next reply, echoing server whose cancel "
            "leaves the segment in flight (ms)",
            _fmt(echo_ours),
            _fmt(echo_theirs),
            _advantage(
                statistics.median(echo_ours) if echo_ours else None,
                statistics.median(echo_theirs) if echo_theirs else None,
            ),
        )
    )

    for i, seg in enumerate(bench.config.segmentations):
        w_ours, w_theirs = _words_for(ours, seg.label), _words_for(theirs, seg.label)
        rows.append(
            (
                f"8{'abcdefgh'[i]}. Words spoken/written, two replies back to back, {seg.label}",
                _words_cell(w_ours),
                _words_cell(w_theirs),
                _advantage(
                    None if w_ours is None else float(w_ours.spoken),
                    None if w_theirs is None else float(w_theirs.spoken),
                    higher_is_better=True,
                ),
            )
        )

    for letter, ping in (("a", True), ("b", False)):
        i_ours, i_theirs = _idle_for(ours, ping), _idle_for(theirs, ping)
        answered = "answered" if ping else "refused"
        rows.append(
            (
                f"9{letter}. ErrorFrames per idle hour (60 s timeout), pings {answered}",
                _idle_cell(i_ours),
                _idle_cell(i_theirs),
                _advantage(
                    None if i_ours is None else i_ours.errors_per_hour,
                    None if i_theirs is None else i_theirs.errors_per_hour,
                ),
            )
        )
    for letter, ping in (("c", True), ("d", False)):
        i_ours, i_theirs = _idle_for(ours, ping), _idle_for(theirs, ping)
        answered = "answered" if ping else "refused"
        rows.append(
            (
                f"9{letter}. Words spoken/written of a reply right after the idle period, "
                f"pings {answered}",
                _after_idle_cell(i_ours),
                _after_idle_cell(i_theirs),
                _advantage(
                    None if i_ours is None else float(i_ours.reply_spoken),
                    None if i_theirs is None else float(i_theirs.reply_spoken),
                    higher_is_better=True,
                ),
            )
        )

    header = ("Metric", OURS, THEIRS, "ours better by")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:"]) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _words_for(r: ServiceResult, label: str) -> WordsRun | None:
    return next((w for w in r.words if w.segmentation == label), None)


def _words_cell(w: WordsRun | None) -> str:
    if w is None:
        return "n/a"
    extra = f" (+{w.extra} extra)" if w.extra else ""
    return f"{w.spoken}/{w.written}{extra}, {w.errors} ErrorFrame{'s' * (w.errors != 1)}"


def _idle_for(r: ServiceResult, ping: bool) -> IdleRun | None:
    return next((i for i in r.idle if i.ping_supported == ping), None)


def _idle_cell(i: IdleRun | None) -> str:
    if i is None:
        return "n/a"
    periods = i.idle_s / i.timeout_s
    return f"{i.errors_per_hour:.0f} ({i.errors} in {periods:.0f} timeouts)"


def _after_idle_cell(i: IdleRun | None) -> str:
    if i is None:
        return "n/a"
    return (
        f"{i.reply_spoken}/{i.reply_written}, "
        f"{i.reply_errors} ErrorFrame{'s' * (i.reply_errors != 1)}"
    )


def format_settings(cfg: BenchConfig) -> str:
    """The settings a run used, for the report."""
    where = "in this process" if cfg.server_in_process else "a child process"
    return "\n".join(
        [
            f"sample rate {cfg.sample_rate} Hz, tone backend, server in {where}, 127.0.0.1",
            f"metrics 1-5 server: {_switches(cfg.latency_server)}",
            "metric 4 servers:   as metrics 1-5 (completes held 4 s unless the client asks "
            "otherwise), plus per sub-row: "
            + "; ".join(f"{h.key} {_switches(h.switches)}" for h in cfg.held_completes),
            f"metric 6 server:    {_switches(cfg.load_server)}",
            f"metric 7 server:    {_switches(cfg.echo_server)}",
            f"metric 8 servers:   {_switches(cfg.words_server)}, plus per sub-row: "
            + "; ".join(
                (_switches(seg.switches) or "nothing")
                + (f" and a {1000 * cfg.token_pause_s:.0f} ms token pause" * seg.token_pause)
                for seg in cfg.segmentations
            ),
            f"metric 9 servers:   {_switches(cfg.idle_server)}, "
            f"idle_timeout_s={cfg.idle_timeout_s}, ping_supported=True / False; "
            f"{cfg.idle_periods} timeouts idle; Pipecat's keep-alive scaled "
            f"{THEIRS_KEEPALIVE_S:g} s -> "
            f"{THEIRS_KEEPALIVE_S * cfg.idle_timeout_s / DOCUMENTED_IDLE_TIMEOUT_S:g} s",
            f"runs per latency metric: {cfg.runs} (median, min-max in brackets); "
            f"CPU: {cfg.cpu_replies} replies back to back; load: "
            f"{', '.join(map(str, cfg.load_steps))} sessions x {cfg.load_trials} trial(s), "
            f"replies started over {cfg.load_stagger_s:g} s, "
            f"{expected_reply_audio_s(cfg.load_reply, cfg.sample_rate):.1f} s of audio each, "
            f"slack {1000 * cfg.keep_up_slack_s:.0f} ms",
        ]
    )


def _failed_cell(r: ServiceResult, label: str) -> str:
    """What a service got instead of a measurement, from its recorded problems."""
    why = [p for p in r.problems if label in p]
    return "failed (see details)" if why else "n/a"


def _switches(switches: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else f"{k}={v}"
        for k, v in switches.items()
    )


def _first_segment_s(sample_rate: int) -> float:
    """Audio of the interrupted reply's first sentence (its first segment)."""
    first = INTERRUPTED_REPLY.split(". ")[0] + "."
    return seconds(len(expected_audio(first, sample_rate)), sample_rate)


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
        if r.echo_barge_in:
            echo = r.echo_barge_in
            lines.append(
                "  metric 7 (echoing server): interrupted audio after the InterruptionFrame "
                f"(ms) {_fmt([x.stale_audio_ms for x in echo])}; InterruptionFrame inside "
                f"the service (ms) {_fmt([x.interruption_in_service_ms for x in echo])}; "
                f"audio of the interrupted reply before the barge-in (ms) "
                f"{_fmt([x.heard_before_ms for x in echo])}, of a first segment of "
                f"{1000 * _first_segment_s(bench.config.sample_rate):.0f} ms, so its rest "
                "was still streaming at real time when the user barged in"
            )
        for w in r.words:
            lines.append(
                f"  metric 8, {w.segmentation}: reply A {w.spoken_a}/{w.written_a}, "
                f"reply B {w.spoken_b}/{w.written - w.written_a}, {w.extra} extra tones"
                + (f" ({', '.join(w.extra_heard)})" if w.extra_heard else "")
                + f", last audio {w.wall_s:.1f} s after the first LLM frame"
                + "".join(f"\n    ErrorFrame: {m}" for m in w.error_messages[:5])
            )
        for i in r.idle:
            lines.append(
                f"  metric 9, pings {'answered' if i.ping_supported else 'refused'}: "
                f"{i.errors} ErrorFrames in {i.idle_s:.1f} s idle at a {i.timeout_s:g} s timeout "
                f"(and {i.startup_errors} in the first quarter period, not counted); "
                f"{i.sockets_opened} sockets opened in that time"
                + "".join(f"\n    {n} x ErrorFrame: {m}" for m, n in i.error_messages.items())
                + f"\n    reply after the idle period: {i.reply_spoken}/{i.reply_written} words"
                + "".join(f"\n    ErrorFrame during the reply: {m}" for m in i.reply_error_messages)
            )
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
