#!/usr/bin/env python
"""The benchmarks' harness: servers, the two services, sessions, pacing, audio truth.

Every benchmark runs each service in a real Pipecat pipeline
``[in-recorder, TTS service, out-recorder]`` against the local
Waves-compatible server (tone backend) and measures at the service's edges:
the recorders stamp every frame with ``time.perf_counter()``.

Run as a script, this module is the child-process server of :func:`serve`::

    python benchmarks/harness.py --serve '{"ttfb_ms": 150}'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Protocol

from loguru import logger
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.services.smallest.tts import SmallestTTSService
from pipecat.services.tts_service import TTSService
from pipecat.workers.runner import WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipecat_waves import WavesTTSService
from pipecat_waves.server import LocalWavesServer, ServerBehaviour, ToneBackend
from pipecat_waves.server.tones import fused_pairs, transcribe_exact, words_of
from tests.support.recorder import Recorder, Stamped

__all__ = [
    "API_KEY",
    "OURS",
    "SERVICES",
    "THEIRS",
    "BenchError",
    "HasUrl",
    "Recorder",
    "ServiceFactory",
    "Session",
    "Stamped",
    "describe",
    "expected_audio",
    "expected_reply_audio_s",
    "expected_reply_bytes",
    "finish",
    "frame_at",
    "fused_pairs",
    "idle_factories",
    "in_turn",
    "joined_audio",
    "llm_reply",
    "make_ours",
    "make_theirs",
    "matched_words",
    "overlay",
    "seconds",
    "serve",
    "settings_of",
    "switches_of",
    "total_bytes",
    "transcribe_exact",
    "words_of",
]

API_KEY = "sk-bench-0123456789"

#: This file, run again as the child-process server (see ``serve``).
_SCRIPT = str(Path(__file__).resolve())

OURS = "pipecat-waves WavesTTSService"
THEIRS = "pipecat SmallestTTSService"


# ---------------------------------------------------------------- servers


def switches_of(behaviour: ServerBehaviour) -> dict[str, Any]:
    """The fields of ``behaviour`` that differ from the server's defaults, in field order."""
    default = ServerBehaviour()
    return {
        f.name: getattr(behaviour, f.name)
        for f in fields(ServerBehaviour)
        if getattr(behaviour, f.name) != getattr(default, f.name)
    }


def overlay(base: ServerBehaviour, changes: ServerBehaviour) -> ServerBehaviour:
    """``base`` with every switch that ``changes`` sets away from its default."""
    return replace(base, **switches_of(changes))


#: The server's pace: always named, first, when a benchmark prints its settings.
PACE = ("handshake_delay_ms", "ttfb_ms", "chunk_ms", "chunk_interval_ms")


def settings_of(behaviour: ServerBehaviour, shown: Sequence[str] = ()) -> dict[str, Any]:
    """What to print of ``behaviour``: its pace, then every other switch away from its default.

    The switches named in ``shown`` are included even at their defaults (a
    measurement that depends on one names it).
    """
    changed = switches_of(behaviour)
    others = [f.name for f in fields(ServerBehaviour) if f.name not in PACE]
    order = [*PACE, *(n for n in others if n in changed or n in shown)]
    return {n: getattr(behaviour, n) for n in order}


def describe(settings: dict[str, Any]) -> str:
    """``name=value, ...`` (numbers without trailing zeros)."""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else f"{k}={v}"
        for k, v in settings.items()
    )


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
async def serve(behaviour: ServerBehaviour, *, in_process: bool) -> AsyncIterator[HasUrl]:
    """Run the local server behaving as ``behaviour``, here or in a child process.

    A child process keeps the server's CPU out of the client's
    ``time.process_time()`` and off the client's event loop. Either way the
    server gets its own copy of ``behaviour``.
    """
    if in_process:
        async with LocalWavesServer(
            api_key=API_KEY, backend=ToneBackend(), behaviour=replace(behaviour)
        ) as server:
            yield server
        return
    with tempfile.TemporaryFile() as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            _SCRIPT,
            "--serve",
            json.dumps(switches_of(behaviour)),
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
            # Closing stdin is the child's signal to stop (see serve_forever).
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def serve_forever(switches: dict[str, Any]) -> None:
    """Child-process side of :func:`serve`: serve until stdin closes."""
    behaviour = ServerBehaviour(**switches)
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


def joined_audio(frames: Sequence[Stamped]) -> bytes:
    """The audio of ``frames`` (all audio frames), joined."""
    return b"".join(s.frame.audio for s in frames)  # type: ignore[attr-defined]


def total_bytes(frames: Sequence[Stamped]) -> int:
    """Bytes of audio in ``frames`` (all audio frames)."""
    return sum(len(s.frame.audio) for s in frames)  # type: ignore[attr-defined]


async def finish(session: Session) -> None:
    """End a session whose measurement is over.

    Everything measured has come out by now. Pipecat's service would hold an
    ``EndFrame`` for its 3 s end-of-turn timeout, which measures nothing new,
    so every session is cancelled the same way.
    """
    await session.cancel()


def main(argv: list[str] | None = None) -> int:
    """Serve (the child-process side of :func:`serve`)."""
    parser = argparse.ArgumentParser(description="The benchmarks' child-process server.")
    parser.add_argument("--serve", required=True, help="non-default ServerBehaviour fields (JSON)")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    asyncio.run(serve_forever(json.loads(args.serve)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
