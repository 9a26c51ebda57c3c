"""Property tests: however a server cuts, chunks, times and completes a reply,
the session plays all of it once, in order, ends it after its last sample, and
keeps word times on the audio.

A pure simulation of the server side (no sockets): the text the session sent
is cut into segments at random word boundaries, each word rendered as audio of
known length, split into chunks of random (even odd) sizes; word timestamps
come after or before their audio, relative to the segment or to the context;
completes come at once, late, merged into the last one, or never.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol.requests import VoiceParams

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

RATE = 16000
BYTES_PER_CHAR = 320  # 10 ms of audio per character
VOCABULARY = ["yes", "table", "for", "two", "tonight", "at", "eight", "thanks", "a", "window"]


@st.composite
def replies(draw):
    sentences = draw(
        st.lists(
            st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=6),
            min_size=1,
            max_size=4,
        )
    )
    texts = [" ".join(words).capitalize() + ". " for words in sentences]
    n_words = sum(len(s) for s in sentences)
    cuts = draw(st.sets(st.integers(min_value=1, max_value=max(1, n_words - 1))))
    return {
        "fragments": texts,
        "cuts": sorted(c for c in cuts if c < n_words),
        "timed": draw(st.booleans()),
        "words_first": draw(st.booleans()),
        "reference": draw(st.sampled_from(["segment", "context"])),
        "completes": draw(st.sampled_from(["immediate", "delayed", "missing", "coalesced"])),
        "chunk_sizes": draw(
            st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=8)
        ),
        "pauses": draw(st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1)),
        "named": draw(st.booleans()),
    }


def word_audio(index: int, word: str) -> bytes:
    sample = (index + 1).to_bytes(2, "little", signed=True)
    return sample * (len(word) * BYTES_PER_CHAR // 2)


def serve(case, wire_text: str):
    """The frames a server would send for ``wire_text``, with the gap before each."""
    words = re.findall(r"\S+", wire_text)
    bounds = [0, *case["cuts"], len(words)]
    frames: list[tuple[float, rs.ServerEvent]] = []
    chunk_sizes, pauses = case["chunk_sizes"], case["pauses"]
    context_s = 0.0
    pending_completes: list[rs.Envelope] = []
    for n, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        env = rs.Envelope(request_id=f"task_{n}" if case["named"] else None)
        pcm = b"".join(word_audio(i, words[i]) for i in range(lo, hi))
        timeline: list[tuple[int, rs.ServerEvent]] = []
        offset = 0
        for i in range(lo, hi):
            start = offset / (2 * RATE)
            offset += len(word_audio(i, words[i]))
            end = offset / (2 * RATE)
            base = context_s if case["reference"] == "context" else 0.0
            at = (offset - len(word_audio(i, words[i]))) if case["words_first"] else offset
            timeline.append((at, rs.WordTimestamp(env, words[i], base + start, base + end)))
        chunks: list[tuple[int, rs.ServerEvent]] = []
        pos, k = 0, n
        while pos < len(pcm):
            size = chunk_sizes[k % len(chunk_sizes)]
            chunks.append((pos, rs.AudioChunk(env, pcm[pos : pos + size])))
            pos += size
            k += 1
        # Interleave audio and words by byte position; a word "after" its audio
        # goes once the chunk holding its last byte has gone.
        events: list[rs.ServerEvent] = []
        words_left = timeline if case["timed"] else []
        for pos_start, event in chunks:
            end_pos = pos_start + len(event.audio)  # type: ignore[union-attr]
            limit = pos_start if case["words_first"] else end_pos
            ready = [w for w in words_left if w[0] <= limit]
            words_left = [w for w in words_left if w not in ready]
            if case["words_first"]:
                events += [w[1] for w in ready]
                events.append(event)
            else:
                events.append(event)
                events += [w[1] for w in ready]
        events += [w[1] for w in words_left]
        pause = pauses[n % len(pauses)]
        for i, event in enumerate(events):
            frames.append((pause if i == 0 else 0.005, event))
        context_s += len(pcm) / (2 * RATE)
        if case["completes"] == "immediate" or not case["named"]:
            # A server that names no segment marks its end with the complete.
            frames.append((0.005, rs.SegmentComplete(env)))
        else:
            pending_completes.append(env)
    if case["completes"] == "delayed":
        frames += [(1.5, rs.SegmentComplete(env)) for env in pending_completes]
    elif case["completes"] == "coalesced" and pending_completes:
        frames.append((0.2, rs.SegmentComplete(pending_completes[-1])))
    expected = b"".join(word_audio(i, w) for i, w in enumerate(words))
    starts, pos = [], 0
    for i, w in enumerate(words):
        starts.append(pos / (2 * RATE))
        pos += len(word_audio(i, w))
    return frames, expected, starts


@settings(max_examples=150, deadline=None)
@given(replies())
def test_every_sample_once_in_order_and_the_end_after_the_last(case):
    params = VoiceParams(voice_id="avery", sample_rate=RATE, word_timestamps=case["timed"])
    session = sn.WavesSession(sn.SessionConfig(sample_rate=RATE, min_gap_guard_s=0.5))
    session.start()
    session.connection_opened(1, 0.0)
    session.connection_opened(2, 0.0)
    session.receive(1, rs.Pong(), 0.0)
    out: list[sn.Output] = []
    for text in case["fragments"]:
        out += session.send_text("r", text, params, 0.0, max_buffer_delay_ms=0)
    out += session.close_context("r", 0.0)
    wire_text = "".join(o.message["text"] for o in out if isinstance(o, sn.Send))
    frames, expected, starts = serve(case, wire_text)
    now, results = 0.0, []
    for gap, event in frames:
        # Time passes between frames; the session may act on it.
        if gap > 0.01:
            results += session.poll(now + gap / 2)
        now += gap
        results += session.receive(1, event, now)
    for _ in range(200):  # let quiet guards run out; answer liveness pings
        if any(isinstance(o, sn.Send) and o.message == {"type": "ping"} for o in results[-5:]):
            results += session.receive(1, rs.Pong(), now)
        now += 0.05
        results += session.poll(now)
        if any(isinstance(o, sn.ContextFinished) for o in results):
            break
    finishes = [i for i, o in enumerate(results) if isinstance(o, sn.ContextFinished)]
    audio = [i for i, o in enumerate(results) if isinstance(o, sn.AudioOut)]
    assert len(finishes) == 1, "the reply ends exactly once"
    assert not audio or audio[-1] < finishes[0], "no audio after the end"
    played = b"".join(o.pcm for o in results if isinstance(o, sn.AudioOut))
    assert played == expected, "every sample once, in order"
    times = [o.time_s for o in results if isinstance(o, sn.WordOut)]
    if case["timed"]:
        assert len(times) == len(starts)
        assert all(abs(a - b) < 1e-6 for a, b in zip(times, starts, strict=True))
