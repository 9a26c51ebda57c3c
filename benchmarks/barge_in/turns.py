"""Scenarios of one session: barge-in, back-to-back turns, CPU, words heard."""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pipecat.frames.frames import (
    InterruptionFrame,
    TTSAudioRawFrame,
)

from benchmarks.barge_in.config import (
    CPU_REPLIES,
    INTERRUPTED_REPLY,
    NEXT_REPLY,
    REPLY_A,
    REPLY_B,
    WORDS_REPLY_A,
    WORDS_REPLY_B,
    BenchConfig,
    Segmentation,
)
from benchmarks.harness import (
    BenchError,
    ServiceFactory,
    Session,
    Stamped,
    expected_audio,
    expected_reply_bytes,
    finish,
    frame_at,
    fused_pairs,
    joined_audio,
    llm_reply,
    matched_words,
    seconds,
    total_bytes,
    transcribe_exact,
    words_of,
)

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
        await finish(session)
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
        heard_before_ms=1000 * seconds(total_bytes(before), rate),
        pushed_while_held_ms=1000 * seconds(total_bytes([s for s in before if s.t >= t_in]), rate),
    )


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
                and joined_audio(session.out.audio()).find(b_audio) >= 0
            )

        # Pipecat's service ends a turn only after 3 s without audio.
        if not await session.out.wait_until(b_arrived, 15):
            raise BenchError("reply B's audio did not come out intact within 15 s")
    finally:
        await finish(session)
    audio = session.out.audio()
    at = joined_audio(audio).find(b_audio)
    if at <= 0:
        raise BenchError("no audio of reply A came before reply B")
    last_a = audio[frame_at(audio, at - 1)]
    first_b = audio[frame_at(audio, at)]
    return BackToBackRun(
        gap_ms=1000 * (first_b.t - last_a.t), reply_a_audio_ms=1000 * seconds(at, rate)
    )


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
                and joined_audio(session.out.audio()[-40:]).find(last) >= 0
            )

        timeout = 10 + 4 * len(replies)  # Pipecat's service idles 3 s per turn
        if not await session.out.wait_until(done, timeout):
            raise BenchError(f"the last reply did not finish within {timeout} s")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await finish(session)
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
        await until_quiet(session, sent, enough, cfg.words_quiet_s)
    finally:
        await finish(session)
    return _count_words(session, seg.label, sent)


async def until_quiet(session: Session, since: float, enough: int, quiet_s: float) -> None:
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
    heard = transcribe_exact(
        joined_audio(session.out.audio()), rate, written, also=fused_pairs(written)
    )
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
