"""The demo end to end, offline: the conversation is heard, the barge-in cuts turn 3."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import wave
from dataclasses import dataclass

import pytest

from pipecat_waves import demo
from pipecat_waves.commands import API_KEY_ENVS
from tests.support.transcribe import transcribe, word_recall


@dataclass
class Row:
    turn: int
    at_s: float
    ttfb_ms: float
    audio_s: float
    words: int
    interrupted: bool


@dataclass
class DemoRun:
    stdout: str
    stderr: str
    rows: list[Row]
    pcm: bytes
    rate: int


def _table(stdout: str) -> list[Row]:
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["turn", "at", "(s)"])
    rows = []
    for line in lines[header + 1 :]:
        cells = line.split()
        if len(cells) != 6 or not cells[0].isdigit():
            break
        rows.append(
            Row(
                int(cells[0]),
                float(cells[1]),
                float(cells[2]),
                float(cells[3]),
                int(cells[4]),
                cells[5] == "yes",
            )
        )
    return rows


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One run of ``python -m pipecat_waves.demo`` with no API key, as a user would."""
    pytest.importorskip("piper.voice", reason="needs the voice extra")
    out = tmp_path_factory.mktemp("demo") / "demo.wav"
    env = {k: v for k, v in os.environ.items() if k not in API_KEY_ENVS}
    done = subprocess.run(
        [sys.executable, "-m", "pipecat_waves.demo", "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with wave.open(str(out), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    return DemoRun(done.stdout, done.stderr, _table(done.stdout), pcm, rate)


def _turn_audio(run: DemoRun, row: Row) -> bytes:
    start = int(row.at_s * run.rate) * 2
    return run.pcm[start : start + int(row.audio_s * run.rate) * 2]


pytestmark = pytest.mark.speech


def test_runs_offline_and_prints_a_table_of_every_turn(demo_run: DemoRun):
    assert "embedded local Waves-compatible server at ws://127.0.0.1:" in demo_run.stdout
    assert [r.turn for r in demo_run.rows] == [1, 2, 3, 4]
    assert [r.interrupted for r in demo_run.rows] == [False, False, True, False]
    for row, turn in zip(demo_run.rows, demo.SCRIPT, strict=True):
        assert row.words == len(turn.bot.split()), "every token of the reply was streamed"
        assert 0 < row.ttfb_ms < 3000
    assert "Traceback" not in demo_run.stderr
    assert "DEBUG" not in demo_run.stderr, "library logs stay quiet unless --verbose"


def test_wav_holds_every_turn_in_order_at_real_pace(demo_run: DemoRun):
    assert demo_run.rate == demo.SAMPLE_RATE
    rows = demo_run.rows
    for before, after in itertools.pairwise(rows):
        assert after.at_s == pytest.approx(before.at_s + before.audio_s + demo.TURN_GAP_S, abs=0.02)
    total = rows[-1].at_s + rows[-1].audio_s
    assert len(demo_run.pcm) / (2 * demo_run.rate) == pytest.approx(total, abs=0.02)


def test_uninterrupted_turns_are_heard_in_full(demo_run: DemoRun):
    for row, turn in zip(demo_run.rows, demo.SCRIPT, strict=True):
        if row.interrupted:
            continue
        heard = transcribe(_turn_audio(demo_run, row), demo_run.rate)
        assert word_recall(turn.bot, heard) >= 0.8, f"turn {row.turn}: heard {heard!r}"


def test_interrupted_turn_stops_early_and_nothing_of_it_plays_later(demo_run: DemoRun):
    from pipecat_waves.server.piper_backend import PiperBackend

    row = demo_run.rows[2]
    reply = demo.SCRIPT[2].bot
    full = PiperBackend().synthesize(
        reply, voice_id="avery", speed=1.0, sample_rate=demo.SAMPLE_RATE
    )
    # Cut once 1.2 s had played, within one 150 ms chunk.
    assert demo.INTERRUPT_AFTER_S <= row.audio_s < demo.INTERRUPT_AFTER_S + 0.5
    assert row.audio_s < 0.3 * full.duration_s
    heard = transcribe(_turn_audio(demo_run, row), demo_run.rate)
    last_sentence = reply[reply.rindex("And for dessert") :]
    assert word_recall(last_sentence, heard) <= 0.2, f"heard {heard!r}"
    stale = re.search(r"(\d+) ms of the cut reply arrived afterwards", demo_run.stdout)
    assert stale is not None and stale.group(1) == "0"
    # The next turn followed the cut without waiting for the rest of the reply.
    assert demo_run.rows[3].at_s == pytest.approx(
        row.at_s + row.audio_s + demo.TURN_GAP_S, abs=0.02
    )
