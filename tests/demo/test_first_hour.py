"""The commands as a new user meets them.

Ctrl-C ends a command at once and quietly; every failure is one ``error:``
line naming the fix, true to the server it came from; the server is quiet
unless asked with ``-v``. What needs a process of its own (Ctrl-C, the
entry points, a server's output until it is stopped) runs in a child
process; the one-line failures run ``cli.main`` in this one, which is the
same code without a new interpreter importing Pipecat (seconds a command).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import wave
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from loguru import logger

from pipecat_waves import __version__
from pipecat_waves.cli import main as cli
from pipecat_waves.cli.commands import API_KEY_ENVS
from pipecat_waves.protocol.constants import LIVE_PATH
from pipecat_waves.server import LocalWavesServer, ToneBackend
from tests.server.conftest import wait_until

KEY = "sk-first-hour-4c1d"
#: Generous: a command that hangs on Ctrl-C takes over a minute; one that
#: works ends in well under a second.
EXIT_WAIT_S = 10.0


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in API_KEY_ENVS}
    env.update(extra)
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipecat_waves", *args]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args),
        env=env if env is not None else _env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Ran:
    """What a command did: its exit code, and what it printed (and logged)."""

    returncode: int
    stdout: str
    stderr: str


def _cli(capsys: pytest.CaptureFixture[str], *args: str, ignore_thread: int | None = None) -> Ran:
    """Run the command line in this process, as ``pipecat-waves`` would in its own.

    What the command logs counts as stderr, as it would in a child process
    (loguru's sinks keep the stream they were given, which capsys does not
    see); records of ``ignore_thread`` (a server the test runs) do not.
    """
    logged: list[str] = []
    sink = logger.add(
        logged.append, level="DEBUG", filter=lambda r: r["thread"].id != ignore_thread
    )
    try:
        try:
            code = cli.main(list(args))
        except SystemExit as e:  # argparse's own checks
            code = int(e.code or 0)
    finally:
        try:
            logger.remove(sink)
        except ValueError:
            # The command set up logging itself (``serve`` logs warnings to
            # stderr, which capsys saw) and left loguru's default sink on
            # capsys's stream: point it back at the process's stderr.
            logger.remove()
            logger.add(sys.__stderr__)
    out, err = capsys.readouterr()
    return Ran(code, out, err + "".join(logged))


def _one_error_line(done: subprocess.CompletedProcess[str] | Ran) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stdout
    return lines[0]


async def _spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *_command(*args),
        env=env if env is not None else _env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _read_until(stream: asyncio.StreamReader, marker: str) -> str:
    seen = ""
    async with asyncio.timeout(60):
        while marker not in seen:
            line = (await stream.readline()).decode()
            assert line, f"ended before {marker!r}: {seen}"
            seen += line
    return seen


# ------------------------------------------------------------------ Ctrl-C


async def test_ctrl_c_ends_the_demo_at_once_quietly_and_closes_its_sockets(tmp_path):
    out = tmp_path / "demo.wav"
    async with LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as server:
        proc = await _spawn(
            "demo", "--base-url", server.ws_base_url, "--api-key", KEY, "-o", str(out)
        )
        assert proc.stdout is not None
        await _read_until(proc.stdout, "user >")
        await wait_until(lambda: any(s.chunks_sent for s in server.segments), 30)  # speaking
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), EXIT_WAIT_S)
        await wait_until(lambda: all(c.closed for c in server.connections), 5)
        codes = [c.close_code for c in server.connections]
    assert proc.returncode == 130
    assert stderr.decode() == ""  # no traceback, no "Task was destroyed"
    assert "Traceback" not in stdout.decode()
    assert not out.exists()
    # Closed with a closing handshake, not dropped by the process dying.
    assert codes and all(code in (1000, 1001) for code in codes), codes


@pytest.mark.parametrize("after_s", [0.3, 1.0, 2.0])
async def test_ctrl_c_while_starting_up_is_quiet_too(after_s, tmp_path):
    proc = await _spawn("demo", "--backend", "tone", "-o", str(tmp_path / "d.wav"))
    await asyncio.sleep(after_s)  # somewhere in start-up: imports, server, pipeline
    proc.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(proc.communicate(), EXIT_WAIT_S)
    assert proc.returncode == 130
    assert stderr.decode() == ""


# ---------------------------------------------------------- one-line errors


def test_version():
    done = _run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"pipecat-waves {__version__}"


def test_console_script_is_the_same_command():
    script = Path(sys.executable).with_name("pipecat-waves")
    if not script.exists():
        pytest.fail(f"the console script is not installed next to {sys.executable}")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == f"pipecat-waves {__version__}"


def test_say_into_a_folder_is_one_line(tmp_path, capsys, no_api_key):
    line = _one_error_line(_cli(capsys, "say", "hi", "--backend", "tone", "-o", str(tmp_path)))
    assert "is a folder" in line and "out.wav" in line


def test_output_format_follows_the_extension_or_is_refused(tmp_path, capsys, no_api_key):
    mp3 = tmp_path / "x.mp3"
    line = _one_error_line(_cli(capsys, "say", "hi", "--backend", "tone", "-o", str(mp3)))
    assert ".mp3" in line and "-o x.wav" in line
    assert not mp3.exists()

    wav, raw = tmp_path / "x.wav", tmp_path / "x.pcm"
    assert _cli(capsys, "say", "Hello there.", "--backend", "tone", "-o", str(wav)).returncode == 0
    assert _cli(capsys, "say", "Hello there.", "--backend", "tone", "-o", str(raw)).returncode == 0
    with wave.open(str(wav), "rb") as w:
        frames = w.readframes(w.getnframes())
    assert raw.read_bytes() == frames  # the same audio, without the header


async def test_messages_name_the_local_server_not_smallest(tmp_path, capsys, no_api_key):
    async with LocalWavesServer(api_key=KEY, backend=ToneBackend(), record=True) as server:
        # The command runs its own event loop, so in a thread; the server's
        # own logs (this thread) are not the command's output.
        here = threading.get_ident()

        async def run(*args: str) -> Ran:
            return await asyncio.to_thread(_cli, capsys, *args, ignore_thread=here)

        base = ["say", "hi", "--base-url", server.ws_base_url, "-o", str(tmp_path / "x.wav")]
        good = await run(*base, "--api-key", KEY)
        wrong = await run(*base, "--api-key", "sk-wrong-1234")
        missing = await run(*base)
        demo_wrong = await run(
            "demo",
            "--base-url",
            server.ws_base_url,
            "--api-key",
            "sk-wrong-1234",
            "-o",
            str(tmp_path / "d.wav"),
        )
    assert good.returncode == 0
    assert "from the local Waves-compatible server at ws://127.0.0.1" in good.stdout
    assert "Smallest" not in good.stdout

    line = _one_error_line(wrong)
    assert "local server" in line and "rejected the API key" in line
    assert "started with" in line and "Smallest.ai console" not in line
    assert "sk-wrong-1234" not in line

    line = _one_error_line(missing)
    assert "requires an API key and none was given" in line and "--api-key" in line

    line = _one_error_line(demo_wrong)
    assert "local Waves server" in line and "rejected the API key" in line
    assert "--api-key" in line and "Smallest.ai console" not in line
    assert "sk-wrong-1234" not in demo_wrong.stdout + demo_wrong.stderr


def test_demo_with_an_unknown_voice_points_at_the_voice_option(tmp_path, capsys, no_api_key):
    done = _cli(
        capsys,
        "demo",
        "--backend",
        "tone",
        "--voice",
        "nosuchvoice",
        "-o",
        str(tmp_path / "d.wav"),
    )
    assert done.returncode == 1
    line = _one_error_line(done)
    assert "unknown voice 'nosuchvoice'" in line and "--voice" in line
    assert "pipecat-waves voices" in line and "Settings(" not in line


def test_serve_without_a_key_names_every_way_to_give_one(capsys, no_api_key):
    done = _cli(capsys, "serve", "--backend", "tone")
    assert done.returncode == 2
    line = _one_error_line(done)
    for hint in ("--api-key", "WAVES_API_KEY", "SMALLEST_API_KEY", "--no-auth"):
        assert hint in line


def test_serve_on_a_port_in_use_is_one_line(capsys, no_api_key):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _cli(capsys, "serve", "--backend", "tone", "--no-auth", "--port", str(port))
    assert done.returncode == 1
    line = _one_error_line(done)
    assert f"port {port}" in line and "already in use" in line and "--port" in line


@pytest.mark.parametrize("module", ["piper", "piper.voice"])
def test_serve_without_the_voice_extra_refuses_at_start_up(
    capsys, no_api_key, monkeypatch: pytest.MonkeyPatch, module: str
):
    # As when the extra is missing: importing Piper fails (even if another
    # test of this process has loaded the voice already: a submodule already
    # imported would be found in sys.modules without its parent, so each one
    # under the missing module goes too).
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    done = _cli(capsys, "serve", "--no-auth", "--port", "0")
    assert done.returncode == 1
    line = _one_error_line(done)
    assert 'pip install "pipecat-waves[voice]"' in line and "--backend tone" in line


def test_serve_with_a_missing_voice_model_refuses_at_start_up(tmp_path, capsys, no_api_key):
    model = tmp_path / "nobody.onnx"
    done = _cli(capsys, "serve", "--no-auth", "--port", "0", "--voice-model", str(model))
    assert done.returncode == 1
    line = _one_error_line(done)
    assert str(model) in line and ".onnx" in line


# ------------------------------------------------------------------- serve


async def _serve_and_speak(*flags: str, env: dict[str, str] | None = None, key: str | None = None):
    """Start ``serve``, speak one sentence through it, Ctrl-C it; return (code, stderr)."""
    proc = await _spawn("serve", "--backend", "tone", "--port", "0", *flags, env=env)
    assert proc.stderr is not None
    seen = await _read_until(proc.stderr, LIVE_PATH)
    url = seen.split("serving Waves live TTS at ")[1].split()[0]
    try:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
            await ws.send_json({"text": "Hello there, how are you today?", "voice_id": "avery"})
            frames = []
            while not frames or frames[-1].get("status") != "complete":
                frames.append(await ws.receive_json(timeout=10))
        assert sum(f.get("status") == "chunk" for f in frames) > 3
    finally:
        proc.send_signal(signal.SIGINT)
        _, rest = await asyncio.wait_for(proc.communicate(), EXIT_WAIT_S)
    return proc.returncode, seen + rest.decode()


async def test_serve_takes_smallest_api_key_and_is_quiet_by_default():
    code, stderr = await _serve_and_speak(env=_env(SMALLEST_API_KEY=KEY), key=KEY)
    assert code == 130
    lines = stderr.splitlines()
    assert len(lines) == 1 and "bearer key required" in lines[0], stderr
    assert KEY not in stderr


async def test_serve_shows_connections_with_v_and_chunks_with_vv():
    _, once = await _serve_and_speak("--no-auth", "-v")
    _, detail = await _serve_and_speak("--no-auth", "-vv")
    assert "live connection 1 accepted" in once and "chunk" not in once
    assert "chunk 0" in detail and "chunk 3" in detail
