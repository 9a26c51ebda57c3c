#!/usr/bin/env python
"""Failover benchmark: a primary TTS whose server dies, a backup, a real ServiceSwitcher.

Each run is a 6-turn conversation (one LLM reply every 4 s) spoken through
``ServiceSwitcher(services=[primary, backup], strategy_type=ServiceSwitcherStrategyFailover)``
in a real Pipecat pipeline ``[in-recorder, switcher, out-recorder]``. The
primary talks to local server A, the backup ("of the same kind") to local
server B; both are ``LocalWavesServer`` with the tone backend, so every word
that reaches the output is read back from the audio. After turn 1, server A
goes away:

* **outage**: A is stopped for good (``LocalWavesServer.stop()``: every open
  socket closed with 1001 "going away", new connections refused);
* **switch back**: as the outage, but A comes back on the same port after
  turn 4; an app handler on the primary's ``on_usable_changed`` switches back
  (:func:`switch_back_when_usable`, written as a user would);
* **blip**: A closes every socket and refuses connections for 0.5 s, then
  comes back on the same port: a service that rides out blips does not fail
  over.

Ours (two ``WavesTTSService``) and Pipecat's (two ``SmallestTTSService``) run
side by side, each with its own pair of servers.

Usage::

    python benchmarks/bench_failover.py [--runs N] [--quick]

What the tables count, per service and scenario (median of the runs, min-max):

* **turns 2-6 heard whole**: every word of the turn read back from the
  output audio, in order (by content, whichever service spoke it);
* **silence**: from server A going away to the first word of any later turn
  leaving the pipeline ("rest of the call" if none did);
* **ErrorFrames**: reported by the primary and the backup (counted at the
  services: the switcher keeps most of them from the rest of the pipeline);
* **is_usable went false**: the primary's ``on_usable_changed(False)``, from
  the kill; **on_usable_changed(True)**: from server A accepting again;
* **turns spoken by server A after it came back**: from server A's records.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loguru import logger
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    API_KEY,
    OURS,
    SERVICES,
    THEIRS,
    BenchError,
    Recorder,
    ServiceFactory,
    Stamped,
    expected_audio,
    llm_reply,
    matched_words,
    switches_of,
    words_of,
)
from pipecat_waves.server import LocalWavesServer, ServerBehaviour, ToneBackend
from pipecat_waves.server.tones import ToneVocabulary, tone_spans

#: The conversation: one sentence per turn, no word shared between turns and
#: no two words sounding alike, so every word heard names its turn.
TURNS = (
    "Good evening and welcome to the harbour grill.",
    "Tonight our chef recommends grilled sea bass.",
    "Every main course comes with seasonal vegetables.",
    "Would you like seating near an open window?",
    "Your booking is confirmed for half past eight.",
    "Thanks so much, see everybody soon!",
)


# ----------------------------------------------------------------- config


@dataclass(frozen=True)
class Scenario:
    """What happens to server A after turn 1.

    Attributes:
        key: Short name.
        label: What the table says.
        comes_back: Server A is started again on the same port.
        blip: It comes back ``blip_s`` after going away (otherwise after
            turn ``back_after_turn``).
    """

    key: str
    label: str
    comes_back: bool
    blip: bool = False


OUTAGE = Scenario("outage", "server A gone for good after turn 1", comes_back=False)
SWITCH_BACK = Scenario("switch_back", "server A gone after turn 1, back later", comes_back=True)
BLIP = Scenario("blip", "server A drops every socket and refuses briefly", True, blip=True)
SCENARIOS = (OUTAGE, SWITCH_BACK, BLIP)


@dataclass
class FailoverConfig:
    """Everything a run can vary.

    Attributes:
        sample_rate: Output rate asked of every service.
        runs: Runs of each scenario per service.
        turns: The conversation, one LLM reply per turn.
        turn_gap_s: From one turn's first LLM frame to the next one's.
        warmup_s: Wait after the pipeline started before turn 1, so every
            service has its socket open.
        kill_after_s: Server A goes away this long after turn 1 was sent
            (and not before turn 1 was heard whole).
        back_after_turn: In the switch-back scenario, server A comes back
            after this turn (1-based) ...
        back_delay_s: ... this long after that turn was sent.
        blip_s: How long the blip refuses connections.
        tail_s: After the last turn, wait this long for turns not yet heard
            (longer than any reply budget, so their ErrorFrames are counted).
        settle_s: Once every turn was heard, wait this long for late frames.
        server: How both servers behave.
        concurrent_scenarios: Run the three scenarios at once (both
            services always run at once).
    """

    sample_rate: int = 24000
    runs: int = 3
    turns: tuple[str, ...] = TURNS
    turn_gap_s: float = 4.0
    warmup_s: float = 1.0
    kill_after_s: float = 3.5
    back_after_turn: int = 4
    back_delay_s: float = 2.0
    blip_s: float = 0.5
    tail_s: float = 12.0
    settle_s: float = 1.0
    server: ServerBehaviour = field(
        default_factory=lambda: ServerBehaviour(
            handshake_delay_ms=100,
            ttfb_ms=150,
            chunk_ms=150,
            # 150 ms of audio every 30 ms: five times faster than real time.
            chunk_interval_ms=30,
        )
    )
    concurrent_scenarios: bool = False

    @classmethod
    def quick(cls) -> FailoverConfig:
        """One run of each scenario, all at once: about 40 s."""
        return cls(runs=1, concurrent_scenarios=True)

    @classmethod
    def tiny(cls) -> FailoverConfig:
        """The smallest run that still exercises every scenario (for tests).

        Four turns 1.5 s apart; the clock is compressed, so the numbers say
        nothing about either service, only that every part of the run works.
        """
        return cls(
            runs=1,
            turns=TURNS[:4],
            turn_gap_s=1.5,
            warmup_s=0.5,
            kill_after_s=1.2,
            back_after_turn=2,
            back_delay_s=0.6,
            blip_s=0.3,
            tail_s=3.0,
            settle_s=0.3,
            concurrent_scenarios=True,
        )

    def back_at_s(self) -> float:
        """When server A comes back in the switch-back scenario, from turn 1's send."""
        return (self.back_after_turn - 1) * self.turn_gap_s + self.back_delay_s


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


# ----------------------------------------------------------------- report


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    if not values:
        return "n/a"
    med, low, high = (fmt.format(v) for v in (statistics.median(values), min(values), max(values)))
    return med if low == high else f"{med} ({low}-{high})"


def _ratio(ours: float | None, theirs: float | None, higher_is_better: bool) -> str:
    """How many times better ours is (> 1: ours is better; inf is "never")."""
    if ours is None or theirs is None:
        return "n/a"
    if ours == theirs:
        return "1.0x (equal)"
    num, den = (ours, theirs) if higher_is_better else (theirs, ours)
    if math.isinf(num) or den == 0:
        return "∞"
    if math.isinf(den) or num == 0:
        return "0x"
    return f"{num / den:.1f}x"


def _silences(runs: Sequence[FailoverRun]) -> list[float]:
    """Silence per run; a run where no later turn was heard counts as infinite."""
    return [r.silence_s if r.silence_s is not None else math.inf for r in runs]


def _silence_cell(runs: Sequence[FailoverRun]) -> str:
    if not runs:
        return "n/a"
    values = _silences(runs)
    if all(math.isinf(v) for v in values):
        return f"rest of the call (> {min(r.observed_s for r in runs):.1f})"
    cell = _spread([v for v in values if not math.isinf(v)])
    never = sum(math.isinf(v) for v in values)
    return cell + (f"; {never} run{'s' * (never != 1)} never" if never else "")


def _heard_cell(runs: Sequence[FailoverRun], n: int) -> str:
    if not runs:
        return "n/a"
    return _spread([float(r.later_heard) for r in runs], "{:.0f}") + f" of {n - 1}"


def _went_false_cell(runs: Sequence[FailoverRun]) -> str:
    if not runs:
        return "n/a"
    times = [r.unusable_s for r in runs if r.unusable_s is not None]
    if not times:
        return f"never (0/{len(runs)} runs)"
    return f"{len(times)}/{len(runs)} runs, {_spread(times)} s after the kill"


def _usable_again_cell(runs: Sequence[FailoverRun]) -> str:
    if not runs:
        return "n/a"
    times = [r.usable_again_s for r in runs if r.usable_again_s is not None]
    if not times:
        return f"never (0/{len(runs)} runs)"
    return f"{len(times)}/{len(runs)} runs, {_spread(times, '{:.2f}')} s after the restart"


def _errors_cell(runs: Sequence[FailoverRun]) -> str:
    """ErrorFrames of both services, and how many of them the backup's."""
    if not runs:
        return "n/a"
    cell = _spread([float(r.errors) for r in runs], "{:.0f}")
    backup = [float(len(r.backup_errors)) for r in runs]
    return cell + (f" (backup: {_spread(backup, '{:.0f}')})" if any(backup) else "")


def _count(runs: Sequence[FailoverRun], pick: Callable[[FailoverRun], float]) -> float | None:
    return _median([pick(r) for r in runs])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_tables(bench: FailoverBench) -> str:
    """Two Markdown tables: the failover (and blip), and the switch back."""
    n = len(bench.config.turns)
    out = {s: bench.runs(OURS, s) for s in SCENARIOS}
    theirs = {s: bench.runs(THEIRS, s) for s in SCENARIOS}
    header = ("Metric", OURS, THEIRS, "ours better by")

    def heard_row(label: str, s: Scenario) -> list[str]:
        return [
            label,
            _heard_cell(out[s], n),
            _heard_cell(theirs[s], n),
            _ratio(
                _count(out[s], lambda r: r.later_heard),
                _count(theirs[s], lambda r: r.later_heard),
                higher_is_better=True,
            ),
        ]

    def errors_row(label: str, s: Scenario) -> list[str]:
        return [
            label,
            _errors_cell(out[s]),
            _errors_cell(theirs[s]),
            _ratio(
                _count(out[s], lambda r: r.errors),
                _count(theirs[s], lambda r: r.errors),
                higher_is_better=False,
            ),
        ]

    def failovers(runs: Sequence[FailoverRun]) -> str:
        if not runs:
            return "n/a"
        return f"{sum(r.unusable_s is not None for r in runs)}/{len(runs)} runs"

    later = f"2-{n}"
    first_table = _table(
        header,
        [
            heard_row(f"Outage: turns {later} heard whole", OUTAGE),
            [
                "Outage: silence from the kill to the first audio of a later turn (s)",
                _silence_cell(out[OUTAGE]),
                _silence_cell(theirs[OUTAGE]),
                _ratio(
                    _median(_silences(out[OUTAGE])),
                    _median(_silences(theirs[OUTAGE])),
                    higher_is_better=False,
                ),
            ],
            errors_row("Outage: ErrorFrames (primary + backup)", OUTAGE),
            [
                "Outage: primary's is_usable went false",
                _went_false_cell(out[OUTAGE]),
                _went_false_cell(theirs[OUTAGE]),
                "",
            ],
            heard_row(f"Blip ({bench.config.blip_s:g} s): turns {later} heard whole", BLIP),
            errors_row(f"Blip ({bench.config.blip_s:g} s): ErrorFrames", BLIP),
            [
                f"Blip ({bench.config.blip_s:g} s): failed over (is_usable went false)",
                failovers(out[BLIP]),
                failovers(theirs[BLIP]),
                "",
            ],
        ],
    )

    def back_turns(runs: Sequence[FailoverRun]) -> str:
        after = range(bench.config.back_after_turn, n)
        if not runs or not after:
            return "n/a"
        spoken = [float(sum(r.heard[k] and r.turn_servers[k] == "A'" for k in after)) for r in runs]
        return _spread(spoken, "{:.0f}") + f" of {len(after)}"

    turns_back = f"{bench.config.back_after_turn + 1}-{n}"
    second_table = _table(
        header,
        [
            heard_row(f"Turns {later} heard whole", SWITCH_BACK),
            [
                "on_usable_changed(True) fired after server A came back",
                _usable_again_cell(out[SWITCH_BACK]),
                _usable_again_cell(theirs[SWITCH_BACK]),
                "",
            ],
            [
                f"Turns {turns_back} spoken whole by server A (the primary's) after it came back",
                back_turns(out[SWITCH_BACK]),
                back_turns(theirs[SWITCH_BACK]),
                "",
            ],
            errors_row("ErrorFrames (primary + backup)", SWITCH_BACK),
        ],
    )
    return (
        f"Failover, primary's server killed after turn 1 of {n}:\n\n{first_table}\n\n"
        f"Switching back, server A back after turn {bench.config.back_after_turn}:\n\n"
        f"{second_table}"
    )


def format_settings(cfg: FailoverConfig) -> str:
    """The settings a run used, for the report."""
    switches = ", ".join(f"{k}={v:g}" for k, v in switches_of(cfg.server).items())
    return "\n".join(
        [
            f"{len(cfg.turns)} turns {cfg.turn_gap_s:g} s apart, sample rate {cfg.sample_rate} Hz, "
            f"tone backend, two in-process servers per service on 127.0.0.1 ({switches})",
            f"server A goes away {cfg.kill_after_s:g} s after turn 1 was sent "
            f"(turn 2 follows {cfg.turn_gap_s - cfg.kill_after_s:g} s later); "
            f"switch back: A returns {cfg.back_delay_s:g} s after turn {cfg.back_after_turn} "
            f"was sent; blip: A refuses for {cfg.blip_s:g} s",
            f"after the last turn: up to {cfg.tail_s:g} s for turns not yet heard; "
            f"{cfg.runs} run(s) per scenario and service (median, min-max in brackets)",
        ]
    )


def format_details(bench: FailoverBench) -> str:
    """Per run: turns heard, first audio, servers, errors, switches."""
    lines: list[str] = []
    for name in bench.results:
        lines.append(f"{name}:")
        for scenario in SCENARIOS:
            for i, r in enumerate(bench.runs(name, scenario), 1):
                turns = " ".join(
                    f"{k + 1}:{'ok' if ok else 'LOST'}"
                    + (f"@{t:.2f}s" if t is not None else "")
                    + f"[{srv}]"
                    for k, (ok, t, srv) in enumerate(
                        zip(r.heard, r.first_audio_s, r.turn_servers, strict=True)
                    )
                )
                lines.append(
                    f"  {scenario.key} run {i}: kill at {r.kill_s:.2f} s"
                    + (f", back at {r.restart_s:.2f} s" if r.restart_s is not None else "")
                    + f"; turns (first audio after send, servers) {turns}"
                )
                lines.append(
                    "    switches (s from the kill): "
                    + (", ".join(f"{role}@{t:.2f}" for t, role in r.switches) or "none")
                    + f"; ErrorFrames past the switcher: {r.edge_errors}"
                    + (f"; {r.unknown_tones} unknown tones" if r.unknown_tones else "")
                )
                for role, messages in (("primary", r.primary_errors), ("backup", r.backup_errors)):
                    for message, count in _tally(messages):
                        lines.append(f"    {role} ErrorFrame x{count}: {message[:160]}")
        for problem in bench.problems[name]:
            lines.append(f"  problem: {problem}")
    return "\n".join(lines)


def _tally(messages: Sequence[str]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for m in messages:
        counts[m] = counts.get(m, 0) + 1
    return list(counts.items())


# ------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs per scenario and service")
    parser.add_argument("--quick", action="store_true", help="one run, scenarios at once (~40 s)")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    cfg = FailoverConfig.quick() if args.quick else FailoverConfig()
    if args.runs is not None:
        cfg.runs = args.runs
    print(format_settings(cfg), flush=True)
    bench = asyncio.run(
        run_benchmark(cfg, progress=lambda m: print(f"  … {m}", file=sys.stderr, flush=True))
    )
    print()
    print(format_tables(bench))
    print()
    print(format_details(bench))
    print(f"\nfinished in {bench.wall_s:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
