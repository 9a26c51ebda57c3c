"""Running every scenario for both services and collecting the results."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from benchmarks.barge_in.config import BenchConfig, Segmentation
from benchmarks.barge_in.sessions import IdleRun, LoadStep, idle_run, load_step
from benchmarks.barge_in.turns import (
    BackToBackRun,
    BargeInRun,
    CpuRun,
    WordsRun,
    back_to_back_run,
    barge_in_run,
    cpu_run,
    words_run,
)
from benchmarks.harness import SERVICES, BenchError, idle_factories, in_turn, overlay, serve

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
            overlay(cfg.latency_server, held.switches), in_process=cfg.server_in_process
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
        switches = overlay(cfg.words_server, seg.switches)
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
        switches = replace(cfg.idle_server, idle_timeout_s=cfg.idle_timeout_s, ping_supported=ping)
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
