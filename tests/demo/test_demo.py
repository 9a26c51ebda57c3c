"""The demo end to end, offline: the conversation is heard, the barge-in cuts turn 3."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from dataclasses import dataclass

import numpy as np
import pytest

from pipecat_waves.cli import demo, demo_conversation
from pipecat_waves.cli.commands import API_KEY_ENVS
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
class Spoken:
    start_s: float
    end_s: float
    who: str


@dataclass
class DemoRun:
    stdout: str
    stderr: str
    rows: list[Row]
    pcm: bytes  # the bot: left channel
    user_pcm: bytes  # the user: right channel
    rate: int
    timeline: list[Spoken]


def _timeline(stdout: str) -> list[Spoken]:
    found = re.findall(r"^\s+([\d.]+)-\s*([\d.]+) s  (user|bot) ", stdout, flags=re.MULTILINE)
    return [Spoken(float(a), float(b), who) for a, b, who in found]


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
    """One run of ``python -m pipecat_waves.cli.demo`` with no API key, as a user would."""
    pytest.importorskip("piper.voice", reason="needs the voice extra")
    out = tmp_path_factory.mktemp("demo") / "demo.wav"
    env = {k: v for k, v in os.environ.items() if k not in API_KEY_ENVS}
    done = subprocess.run(
        [sys.executable, "-m", "pipecat_waves.cli.demo", "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with wave.open(str(out), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (2, 2)
        rate = wav.getframerate()
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return DemoRun(
        done.stdout,
        done.stderr,
        _table(done.stdout),
        stereo[:, 0].tobytes(),
        stereo[:, 1].tobytes(),
        rate,
        _timeline(done.stdout),
    )


def _span(pcm: bytes, rate: int, start_s: float, seconds: float) -> bytes:
    start = int(start_s * rate) * 2
    return pcm[start : start + int(seconds * rate) * 2]


def _turn_audio(run: DemoRun, row: Row) -> bytes:
    return _span(run.pcm, run.rate, row.at_s, row.audio_s)


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


def test_wav_holds_every_line_in_order_at_real_pace(demo_run: DemoRun):
    assert demo_run.rate == demo.SAMPLE_RATE
    rows, timeline = demo_run.rows, demo_run.timeline
    assert [s.who for s in timeline] == ["user", "bot"] * 4
    users, bots = timeline[0::2], timeline[1::2]
    for row, user, bot in zip(rows, users, bots, strict=True):
        assert bot.start_s == pytest.approx(row.at_s, abs=0.01)
        assert bot.end_s - bot.start_s == pytest.approx(row.audio_s, abs=0.02)
        assert bot.start_s == pytest.approx(user.end_s + demo.TURN_GAP_S, abs=0.02)
    for row, bot, next_user in zip(rows, bots, users[1:], strict=False):
        # The user talks over the cut reply; otherwise waits for the bot to finish.
        lead = -demo.BARGE_IN_LEAD_S if row.interrupted else demo.TURN_GAP_S
        assert next_user.start_s == pytest.approx(bot.end_s + lead, abs=0.02)
    total = len(demo_run.pcm) / (2 * demo_run.rate)
    assert total == pytest.approx(bots[-1].end_s, abs=0.02)


def test_user_lines_are_heard_on_the_right_channel(demo_run: DemoRun):
    users = demo_run.timeline[0::2]
    for user, turn in zip(users, demo.SCRIPT, strict=True):
        heard = transcribe(
            _span(demo_run.user_pcm, demo_run.rate, user.start_s, user.end_s - user.start_s),
            demo_run.rate,
        )
        assert word_recall(turn.user, heard) >= 0.8, f"heard {heard!r}"
    # The bot's channel is silent while only the user speaks (the first line).
    first = users[0]
    assert not any(_span(demo_run.pcm, demo_run.rate, first.start_s, first.end_s))


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
    cut = demo_conversation.INTERRUPT_AFTER_S
    assert cut <= row.audio_s < cut + 0.5
    assert row.audio_s < 0.3 * full.duration_s
    heard = transcribe(_turn_audio(demo_run, row), demo_run.rate)
    last_sentence = reply[reply.rindex("And for dessert") :]
    assert word_recall(last_sentence, heard) <= 0.2, f"heard {heard!r}"
    stale = re.search(r"(\d+) ms of the cut reply arrived afterwards", demo_run.stdout)
    assert stale is not None and stale.group(1) == "0"
    # The next turn followed the cut without waiting for the rest of the reply:
    # the user's line (already under way at the cut), a pause, the answer.
    next_user = demo_run.timeline[6]
    assert next_user.start_s == pytest.approx(
        row.at_s + row.audio_s - demo.BARGE_IN_LEAD_S, abs=0.02
    )
    assert demo_run.rows[3].at_s == pytest.approx(next_user.end_s + demo.TURN_GAP_S, abs=0.02)
