"""One failover conversation through a real ServiceSwitcher, and every run of them."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    ManuallySwitchServiceFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyFailover
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.workers.runner import WorkerRunner

from benchmarks.failover.config import SCENARIOS, FailoverConfig, Scenario
from benchmarks.harness import (
    API_KEY,
    SERVICES,
    BenchError,
    Recorder,
    ServiceFactory,
    Stamped,
    expected_audio,
    llm_reply,
    matched_words,
    words_of,
)
from pipecat_waves.server import LocalWavesServer, ToneBackend
from pipecat_waves.server.tones import ToneVocabulary, tone_spans

# ---------------------------------------------------------- the user's side


def switch_back_when_usable(worker: PipelineWorker, primary: FrameProcessor) -> None:
    """Make ``primary`` the switcher's active service again whenever it recovers.

    What an app adds beside a ``ServiceSwitcher`` with
    ``ServiceSwitcherStrategyFailover``: the strategy moves off a service that
    became unusable but never moves back, so when the primary says it is
    usable again (``on_usable_changed`` with ``True``), the app asks for it
    with a ``ManuallySwitchServiceFrame``.

    Args:
        worker: The pipeline worker running the switcher.
        primary: The service to go back to.
    """

    @primary.event_handler("on_usable_changed")
    async def on_usable_changed(service: FrameProcessor, is_usable: bool) -> None:
        if is_usable:
            await worker.queue_frame(ManuallySwitchServiceFrame(service=primary))


# --------------------------------------------------------------- pipeline


class SwitcherSession:
    """One pipeline ``[in-recorder, ServiceSwitcher(primary, backup), out-recorder]``.

    Besides the frames at the pipeline's edges, it notes (with
    ``time.perf_counter()``) every ``ErrorFrame`` each service reported (the
    switcher keeps most of them from reaching the edges), every change of the
    primary's ``is_usable``, and every switch the strategy made.
    """

    def __init__(self, primary: FrameProcessor, backup: FrameProcessor, sample_rate: int) -> None:
        """Build the pipeline around a switcher holding ``primary`` and ``backup``."""
        self.primary = primary
        self.backup = backup
        self.switcher = ServiceSwitcher(
            services=[primary, backup], strategy_type=ServiceSwitcherStrategyFailover
        )
        self.inp = Recorder("bench-in")
        self.out = Recorder("bench-out")
        self.worker = PipelineWorker(
            Pipeline([self.inp, self.switcher, self.out]),
            cancel_on_idle_timeout=False,
            check_dangling_tasks=False,
            enable_rtvi=False,
            idle_timeout_secs=None,
            params=PipelineParams(
                audio_in_sample_rate=sample_rate, audio_out_sample_rate=sample_rate
            ),
        )
        self.service_errors: dict[str, list[tuple[float, str]]] = {"primary": [], "backup": []}
        self.usable_changes: list[tuple[float, bool]] = []
        self.switches: list[tuple[float, str]] = []
        self._runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watch()

    def _watch(self) -> None:
        for role, service in (("primary", self.primary), ("backup", self.backup)):
            errors = self.service_errors[role]

            async def on_error(
                processor: FrameProcessor, error: ErrorFrame, errors: list = errors
            ) -> None:
                errors.append((time.perf_counter(), str(error.error)))

            service.add_event_handler("on_error", on_error)

        @self.primary.event_handler("on_usable_changed")
        async def on_usable_changed(service: FrameProcessor, is_usable: bool) -> None:
            self.usable_changes.append((time.perf_counter(), is_usable))

        @self.switcher.strategy.event_handler("on_service_switched")
        async def on_switched(strategy: Any, service: FrameProcessor) -> None:
            role = "primary" if service is self.primary else "backup"
            self.switches.append((time.perf_counter(), role))

        @self.worker.event_handler("on_pipeline_started")
        async def on_started(worker: PipelineWorker, frame: Frame) -> None:
            self._started.set()

    async def start(self, timeout_s: float = 15.0) -> None:
        """Start the pipeline and wait until frames can be sent."""
        await self._runner.add_workers(self.worker)
        self._task = asyncio.create_task(self._runner.run())
        await asyncio.wait_for(self._started.wait(), timeout_s)

    async def send(self, frames: Sequence[Frame | float]) -> None:
        """Queue ``frames`` at the head of the pipeline, in order."""
        for frame in frames:
            if isinstance(frame, Frame):
                await self.worker.queue_frame(frame)
            else:
                await asyncio.sleep(frame)

    @property
    def edge_errors(self) -> list[Stamped]:
        """``ErrorFrame``s that got past the switcher to the pipeline's edges."""
        return sorted(self.inp.errors + self.out.errors, key=lambda s: s.t)

    async def cancel(self) -> None:
        """Stop at once (an ``EndFrame`` would wait on a dead server)."""
        if self._task is None or self._task.done():
            return
        await self.worker.cancel()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._task, timeout=10)


# ------------------------------------------------------------ audio truth


class WordReader:
    """Reads the words of a conversation back from tone audio, with times.

    Each tone is matched byte for byte (see
    :class:`~pipecat_waves.server.tones.ToneVocabulary`) and gets the time its
    first sample's frame left the pipeline.
    """

    def __init__(self, turns: Sequence[str], sample_rate: int) -> None:
        """Learn the tone of every word of ``turns``.

        Raises:
            ValueError: A word appears in two turns, or two words sound alike.
        """
        self.sample_rate = sample_rate
        self.turn_of: dict[str, int] = {}
        for k, text in enumerate(turns):
            for word in words_of(text):
                if self.turn_of.setdefault(word, k) != k:
                    raise ValueError(f"{word!r} is in two turns")
        self._vocabulary = ToneVocabulary(self.turn_of, sample_rate)

    def read(self, frames: Sequence[Stamped]) -> list[tuple[float, str]]:
        """Every tone of ``frames``' audio as ``(time, word)``; ``"<?>"`` if no word fits."""
        chunks = [s.frame.audio for s in frames if isinstance(s.frame, TTSAudioRawFrame)]
        stamps = [s.t for s in frames if isinstance(s.frame, TTSAudioRawFrame)]
        starts = [0, *itertools.accumulate(len(c) for c in chunks)]
        pcm = b"".join(chunks)
        out: list[tuple[float, str]] = []
        for a, b in tone_spans(pcm, self.sample_rate):
            word = self._vocabulary.name(pcm[2 * a : 2 * b])
            frame = bisect.bisect_right(starts, 2 * a) - 1
            out.append((stamps[frame], word))
        return out


# -------------------------------------------------------------- one run


@dataclass
class FailoverRun:
    """One conversation through the switcher. Times are seconds.

    Attributes:
        scenario: ``Scenario.key``.
        heard: Per turn: every word heard, in order.
        first_audio_s: Per turn: its first word out, from its first LLM frame in.
        turn_servers: Per turn: which servers released any of its words
            (``A``, ``A'`` for A after it came back, ``B``).
        kill_s: Server A went away, from turn 1's first LLM frame.
        restart_s: Server A accepted connections again (same clock).
        silence_s: From server A going away to the first word of a later
            turn out; ``None`` if none came before the run ended.
        observed_s: From server A going away to the end of the run.
        unusable_s: The primary's ``is_usable`` went false, from the kill.
        usable_again_s: It went true again, from the restart.
        primary_errors: ``ErrorFrame`` messages the primary reported.
        backup_errors: ``ErrorFrame`` messages the backup reported.
        edge_errors: ``ErrorFrame``s that got past the switcher.
        switches: ``(seconds from the kill, "primary"/"backup")`` per switch.
        unknown_tones: Tones that are no word of the conversation (cut words).
    """

    scenario: str
    heard: list[bool]
    first_audio_s: list[float | None]
    turn_servers: list[str]
    kill_s: float
    restart_s: float | None
    silence_s: float | None
    observed_s: float
    unusable_s: float | None
    usable_again_s: float | None
    primary_errors: list[str]
    backup_errors: list[str]
    edge_errors: int
    switches: list[tuple[float, str]]
    unknown_tones: int

    @property
    def later_heard(self) -> int:
        """Turns after the first heard whole."""
        return sum(self.heard[1:])

    @property
    def errors(self) -> int:
        """``ErrorFrame``s both services reported."""
        return len(self.primary_errors) + len(self.backup_errors)


def _server(cfg: FailoverConfig, port: int = 0) -> LocalWavesServer:
    return LocalWavesServer(
        api_key=API_KEY,
        backend=ToneBackend(),
        behaviour=replace(cfg.server),
        port=port,
        record=True,
    )


async def failover_run(
    factory: ServiceFactory, scenario: Scenario, cfg: FailoverConfig, reader: WordReader
) -> FailoverRun:
    """Hold one conversation through a switcher while server A goes away."""
    rate = cfg.sample_rate
    servers: dict[str, LocalWavesServer] = {"A": _server(cfg), "B": _server(cfg)}
    for server in servers.values():
        await server.start()
    port_a = servers["A"].port
    session = SwitcherSession(
        factory(servers["A"].ws_base_url, rate), factory(servers["B"].ws_base_url, rate), rate
    )
    switch_back_when_usable(session.worker, session.primary)
    n = len(cfg.turns)
    sent: list[float] = []
    marks: dict[str, float] = {}
    outage_task: asyncio.Task[None] | None = None
    try:
        await session.start()
        await asyncio.sleep(cfg.warmup_s)
        t0 = time.perf_counter()

        async def outage() -> None:
            await _sleep_until(t0 + cfg.kill_after_s)
            if not await session.out.wait_until(lambda: reader_heard(0), cfg.turn_gap_s):
                raise BenchError("turn 1 was not heard whole before the kill")
            marks["kill"] = time.perf_counter()
            await servers["A"].stop()
            if not scenario.comes_back:
                return
            back = marks["kill"] + cfg.blip_s if scenario.blip else t0 + cfg.back_at_s()
            await _sleep_until(back)
            servers["A'"] = _server(cfg, port=port_a)
            await servers["A'"].start()
            marks["restart"] = time.perf_counter()

        def reader_heard(k: int) -> bool:
            return _heard_whole(reader.read(session.out.frames), reader, cfg.turns, k)

        outage_task = asyncio.create_task(outage())
        for k, text in enumerate(cfg.turns):
            await _sleep_until(t0 + k * cfg.turn_gap_s)
            sent.append(time.perf_counter())
            await session.send(llm_reply(text))
        await outage_task
        whole = sum(len(expected_audio(text, rate)) for text in cfg.turns)

        def all_heard() -> bool:
            # Counting bytes first: reading all the audio back on every frame
            # would load the event loop being measured.
            if session.out.audio_bytes < whole:
                return False
            heard = reader.read(session.out.frames)
            return all(_heard_whole(heard, reader, cfg.turns, k) for k in range(n))

        if await session.out.wait_until(all_heard, cfg.tail_s):
            await asyncio.sleep(cfg.settle_s)
        end = time.perf_counter()
    finally:
        if outage_task is not None and not outage_task.done():
            outage_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, BenchError):
                await outage_task
        await session.cancel()
        for server in servers.values():
            await server.stop()
    return _analyse(session, scenario, servers, reader, cfg, sent, marks, end)


async def _sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.perf_counter()))


def _heard_whole(
    heard: Sequence[tuple[float, str]], reader: WordReader, turns: Sequence[str], k: int
) -> bool:
    mine = [w for _, w in heard if reader.turn_of.get(w) == k]
    return all(matched_words(words_of(turns[k]), mine))


def _analyse(
    session: SwitcherSession,
    scenario: Scenario,
    servers: dict[str, LocalWavesServer],
    reader: WordReader,
    cfg: FailoverConfig,
    sent: list[float],
    marks: dict[str, float],
    end: float,
) -> FailoverRun:
    heard = reader.read(session.out.frames)
    n = len(cfg.turns)
    first: list[float | None] = []
    for k in range(n):
        t = next((t for t, w in heard if reader.turn_of.get(w) == k), None)
        first.append(None if t is None else t - sent[k])
    kill = marks["kill"]
    later = [t for t, w in heard if reader.turn_of.get(w, 0) > 0 and t >= kill]
    restart = marks.get("restart")
    went_false = next((t for t, ok in session.usable_changes if not ok), None)
    went_true = next(
        (t for t, ok in session.usable_changes if ok and restart is not None and t >= restart),
        None,
    )
    return FailoverRun(
        scenario=scenario.key,
        heard=[_heard_whole(heard, reader, cfg.turns, k) for k in range(n)],
        first_audio_s=first,
        turn_servers=[_servers_of(words_of(text), servers) for text in cfg.turns],
        kill_s=kill - sent[0],
        restart_s=None if restart is None else restart - sent[0],
        silence_s=min(later) - kill if later else None,
        observed_s=end - kill,
        unusable_s=None if went_false is None else went_false - kill,
        usable_again_s=None if went_true is None or restart is None else went_true - restart,
        primary_errors=[m for _, m in session.service_errors["primary"]],
        backup_errors=[m for _, m in session.service_errors["backup"]],
        edge_errors=len(session.edge_errors),
        switches=[(t - kill, role) for t, role in session.switches],
        unknown_tones=sum(1 for _, w in heard if w not in reader.turn_of),
    )


def _servers_of(words: list[str], servers: dict[str, LocalWavesServer]) -> str:
    """Which servers released any of ``words`` (from their records)."""
    wanted = set(words)
    names = [
        name
        for name, server in servers.items()
        if any(wanted & set(words_of(seg.text)) for seg in server.segments)
    ]
    return "+".join(names) or "-"


# -------------------------------------------------------------- the runs


@dataclass
class FailoverBench:
    """Every run of every scenario, per service."""

    config: FailoverConfig
    results: dict[str, dict[str, list[FailoverRun]]]
    problems: dict[str, list[str]]
    wall_s: float = 0.0

    def runs(self, service: str, scenario: Scenario) -> list[FailoverRun]:
        """The runs of ``scenario`` for ``service``."""
        return self.results[service][scenario.key]


async def run_benchmark(
    cfg: FailoverConfig,
    services: dict[str, ServiceFactory] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> FailoverBench:
    """Run every scenario ``cfg.runs`` times for each service, services side by side."""
    services = services if services is not None else SERVICES
    reader = WordReader(cfg.turns, cfg.sample_rate)
    bench = FailoverBench(
        cfg, {name: {s.key: [] for s in SCENARIOS} for name in services}, {n: [] for n in services}
    )
    started = time.perf_counter()

    async def one(name: str, scenario: Scenario, run: int) -> None:
        try:
            result = await failover_run(services[name], scenario, cfg, reader)
        except (BenchError, TimeoutError, OSError) as e:
            bench.problems[name].append(f"{scenario.key} run {run + 1}: {e!r}")
            return
        bench.results[name][scenario.key].append(result)

    for run in range(cfg.runs):
        groups = [SCENARIOS] if cfg.concurrent_scenarios else [(s,) for s in SCENARIOS]
        for group in groups:
            progress(f"run {run + 1}/{cfg.runs}: {', '.join(s.key for s in group)}")
            await asyncio.gather(*(one(name, s, run) for s in group for name in services))
    bench.wall_s = time.perf_counter() - started
    return bench
