"""Scenarios over time and many sessions: idle timeouts and concurrent load."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.barge_in.config import AFTER_IDLE_REPLY, BenchConfig
from benchmarks.barge_in.turns import until_quiet
from benchmarks.harness import (
    DOCUMENTED_IDLE_TIMEOUT_S,
    ServiceFactory,
    Session,
    expected_audio,
    expected_reply_bytes,
    finish,
    joined_audio,
    llm_reply,
    matched_words,
    seconds,
    transcribe_exact,
    words_of,
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
        await until_quiet(
            session, sent, len(expected_audio(AFTER_IDLE_REPLY, rate)), cfg.words_quiet_s
        )
    finally:
        await finish(session)
    reply_errors = [e for e in session.errors if e.t >= sent]
    written = words_of(AFTER_IDLE_REPLY)
    heard = transcribe_exact(joined_audio(session.out.audio()), rate, written)
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
