"""``pipecat-waves say`` and ``voices``: one-line errors that name the fix, and a WAV."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from pipecat_waves.cli import main as cli
from pipecat_waves.cli.commands import API_KEY_ENVS
from pipecat_waves.server import LocalWavesServer, ToneBackend

SECRET = "sk-local-secret-7f3a"


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert out == ""
    return lines[0]


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (["say", ""], 'pipecat-waves say "Hello"'),
        (["say", "   "], 'pipecat-waves say "Hello"'),
        (["say", "hi", "--sample-rate", "22050"], "8000, 16000, 24000, 44100"),
        (["say", "hi", "--speed", "3"], "from 0.5 to 2.0"),
        (["say", "hi", "--model", "lightning_v9"], "lightning_v3.1, lightning_v3.1_pro"),
        (["say", "hi", "--language", "xx"], "--language with one of"),
        (["say", "hi", "-o", "/no/such/folder/x.wav"], "does not exist"),
    ],
)
def test_bad_input_is_refused_before_any_network(args, fix, capsys, no_api_key, tmp_path):
    # An unreachable --base-url proves the check came first: otherwise the
    # error would be about the connection.
    code = cli.main([*args, "--base-url", "ws://127.0.0.1:9"])
    assert code == 1
    line = _error_line(capsys)
    assert line.startswith("error: ") and fix in line


def test_unknown_voice_says_how_to_list_voices(capsys, no_api_key, tmp_path):
    out = tmp_path / "x.wav"
    code = cli.main(["say", "hi", "--voice", "nobody", "--backend", "tone", "-o", str(out)])
    assert code == 1
    line = _error_line(capsys)
    assert "unknown voice 'nobody'" in line and "pipecat-waves voices" in line
    assert not out.exists()


def test_unreachable_server_names_the_url(capsys, no_api_key, tmp_path):
    code = cli.main(["say", "hi", "--base-url", "ws://127.0.0.1:9", "-o", str(tmp_path / "x.wav")])
    assert code == 1
    line = _error_line(capsys)
    assert "cannot reach" in line and "ws://127.0.0.1:9" in line


def test_plain_ws_to_a_remote_host_is_refused(capsys, no_api_key, tmp_path):
    code = cli.main(["say", "hi", "--base-url", "ws://example.com", "--api-key", SECRET])
    assert code == 1
    line = _error_line(capsys)
    assert "wss://" in line and SECRET not in line


async def test_wrong_key_names_the_variable_and_never_shows_the_key(capsys, tmp_path):
    async with LocalWavesServer(api_key="the-right-key", backend=ToneBackend()) as server:
        code = await asyncio.to_thread(
            cli.main,
            [
                "say",
                "hi",
                "--base-url",
                server.ws_base_url,
                "--api-key",
                SECRET,
                "-o",
                str(tmp_path / "x.wav"),
            ],
        )
    assert code == 1
    line = _error_line(capsys)
    assert "rejected the API key" in line and "WAVES_API_KEY" in line
    assert SECRET not in line


async def test_say_writes_a_wav_through_a_running_server(capsys, tmp_path):
    out = tmp_path / "hello.wav"
    async with LocalWavesServer(api_key=SECRET, backend=ToneBackend(), record=True) as server:
        code = await asyncio.to_thread(
            cli.main,
            [
                "say",
                "Hello there. This is two sentences.",
                "--base-url",
                server.ws_base_url,
                "--api-key",
                SECRET,
                "--sample-rate",
                "16000",
                "--voice",
                "liam",
                "--speed",
                "1.5",
                "-o",
                str(out),
            ],
        )
        sent = [m for m in server.connections[0].received if m.get("text")]
    assert code == 0
    printed, err = capsys.readouterr()
    assert err == ""
    assert f"wrote {out}" in printed and SECRET not in printed
    # One one-shot request per sentence, with the options given.
    assert [m["text"] for m in sent] == ["Hello there.", "This is two sentences."]
    assert {(m["voice_id"], m["sample_rate"], m["speed"]) for m in sent} == {("liam", 16000, 1.5)}
    assert all("context_id" not in m for m in sent)
    with wave.open(str(out), "rb") as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1
        assert wav.getnframes() / 16000 > 1.0


def test_voices_lists_the_local_catalogue_without_a_key(capsys, no_api_key):
    assert cli.main(["voices"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split() == ["id", "name", "language", "gender", "accent"]
    by_id = {row.split()[0]: row for row in rows}
    assert "meher" in by_id and "indian" in by_id["meher"] and "hindi" in by_id["meher"]
    assert "local catalogue" in out


def test_voices_with_a_wrong_key_is_one_line(capsys, no_api_key):
    async def scenario() -> int:
        async with LocalWavesServer(api_key="right", backend=ToneBackend()) as server:
            return await asyncio.to_thread(
                cli.main, ["voices", "--base-url", server.base_url, "--api-key", SECRET]
            )

    assert asyncio.run(scenario()) == 1
    line = _error_line(capsys)
    assert "WAVES_API_KEY" in line and SECRET not in line


def test_console_entry_point_prints_one_error_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in API_KEY_ENVS}
    done = subprocess.run(
        [sys.executable, "-m", "pipecat_waves.cli.main", "say", "hi", "--sample-rate", "12345"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    # Pipecat itself logs a version banner when it is imported; everything
    # else on stderr is ours.
    lines = [line for line in done.stderr.splitlines() if "Pipecat 1." not in line]
    assert lines == [
        "error: Waves cannot produce 12345 Hz audio; use --sample-rate with one of "
        "8000, 16000, 24000, 44100"
    ]


@pytest.mark.speech
def test_say_speaks_the_words_with_the_offline_voice(capsys, no_api_key, tmp_path):
    from tests.support.transcribe import transcribe, word_recall

    pytest.importorskip("piper.voice", reason="needs the voice extra")
    text = "The quick brown fox jumps over the lazy dog. Then it naps in the sun."
    out = tmp_path / "fox.wav"
    assert cli.main(["say", text, "-o", str(out), "--sample-rate", "16000"]) == 0
    assert "offline voice" in capsys.readouterr().out
    with wave.open(str(out), "rb") as wav:
        pcm = wav.readframes(wav.getnframes())
    heard = transcribe(pcm, 16000)
    assert word_recall(text, heard) >= 0.8, heard


def test_out_path_is_not_created_on_failure(no_api_key, tmp_path, capsys):
    out = Path(tmp_path / "never.wav")
    assert cli.main(["say", "hi", "--base-url", "ws://127.0.0.1:9", "-o", str(out)]) == 1
    capsys.readouterr()
    assert not out.exists()
