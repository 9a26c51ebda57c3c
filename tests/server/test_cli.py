"""``pipecat-waves serve``: argument rules and a real run in a child process."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
import pytest

from pipecat_waves.cli import main as cli
from pipecat_waves.cli.commands import API_KEY_ENVS
from pipecat_waves.protocol.constants import LIVE_PATH

SECRET = "cli-secret-key-123"


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],  # no key and no --no-auth
        ["serve", "--api-key", "k", "--no-auth"],
        ["serve", "--no-auth", "--backend", "espeak"],
        ["serve", "--no-auth", "--complete-backoff-ms", "20000"],
        [],
    ],
)
def test_bad_arguments_exit_2_with_one_error_line(argv, monkeypatch, capsys):
    for name in API_KEY_ENVS:
        monkeypatch.delenv(name, raising=False)
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own checks exit from inside the parser
        code = e.code
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err


async def _run_server(args: list[str], env: dict[str, str]):
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from pipecat_waves.cli.main import main; sys.exit(main(sys.argv[1:]))",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    seen = []
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, "server exited early: " + "".join(seen)
            seen.append(line)
            match = re.search(r"(ws://127\.0\.0\.1:\d+)" + re.escape(LIVE_PATH), line)
            if match:
                return proc, match.group(1), seen


@pytest.mark.parametrize("key_source", ["flag", "env"])
async def test_serve_runs_until_interrupted_and_never_logs_the_key(key_source):
    env = {k: v for k, v in os.environ.items() if k not in API_KEY_ENVS}
    args = ["serve", "--port", "0", "--backend", "tone"]
    if key_source == "flag":
        args += ["--api-key", SECRET]
    else:
        env[cli.API_KEY_ENV] = SECRET
    proc, ws_base, seen = await _run_server(args, env)
    try:
        async with aiohttp.ClientSession() as http:
            url = ws_base + LIVE_PATH
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await http.ws_connect(url)
            ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {SECRET}"})
            # No hold-back of the complete (that default has a test of its own).
            await ws.send_json(
                {"text": "Hi.", "voice_id": "avery", "sample_rate": 8000, "complete_backoff_ms": 0}
            )
            frames = []
            while not frames or frames[-1].get("status") != "complete":
                frames.append(await ws.receive_json(timeout=10))
            await ws.close()
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130  # Ctrl-C, as shells report it
    output = "".join(seen) + stderr.decode() + stdout.decode()
    assert SECRET not in output
    assert any(f["status"] == "chunk" for f in frames)


async def test_serve_without_auth():
    env = {k: v for k, v in os.environ.items() if k not in API_KEY_ENVS}
    proc, ws_base, seen = await _run_server(
        ["serve", "--port", "0", "--backend", "tone", "--no-auth"], env
    )
    try:
        assert "no authentication" in "".join(seen)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(ws_base + LIVE_PATH)
            await ws.send_json({"type": "ping"})
            assert await ws.receive_json(timeout=10) == {"type": "pong"}
            await ws.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "held_back"), [([], True), (["--complete-backoff-ms", "0"], False)]
)
async def test_serve_holds_complete_back_as_documented_unless_told(args, held_back):
    env = {k: v for k, v in os.environ.items() if k != cli.API_KEY_ENV}
    proc, ws_base, _ = await _run_server(
        ["serve", "--port", "0", "--backend", "tone", "--no-auth", *args], env
    )
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(ws_base + LIVE_PATH)
            for n in ("1", "2"):
                await ws.send_json(
                    {"text": "Hi.", "voice_id": "avery", "sample_rate": 8000, "request_id": n}
                )
            statuses = []
            while statuses.count("complete") < (1 if held_back else 2):
                statuses.append((await ws.receive_json(timeout=10))["status"])
            await ws.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    # Requests are served in turn: a held-back complete comes after the next one's audio.
    first_complete = statuses.index("complete")
    chunks_after = [s for s in statuses[first_complete:] if s == "chunk"]
    if held_back:
        assert statuses.count("chunk") >= 2 and not chunks_after
    else:
        assert chunks_after, statuses
