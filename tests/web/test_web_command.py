"""``pipecat-waves demo --web``: serves its page and offer endpoint, ends quietly on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tomllib
from importlib.resources import files
from pathlib import Path

import aiohttp

from pipecat_waves.cli.commands import API_KEY_ENVS
from pipecat_waves.web.server import OFFER_PATH

ROOT = Path(__file__).resolve().parents[2]


async def test_web_demo_serves_the_page_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if k not in (*API_KEY_ENVS, "OPENAI_API_KEY")}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipecat_waves",
        "demo",
        "--web",
        "--port",
        "0",
        "--backend",
        "tone",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"the demo ended before saying where to open it: {seen}"
            seen.append(line)
            match = re.search(r"Open (http://127\.0\.0\.1:\d+/) ", line)
            if match:
                break
        url = match.group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as page:
                assert page.status == 200
                html = await page.text()
            offer_url = url.rstrip("/") + OFFER_PATH
            async with http.post(offer_url, json={"sdp": 1}) as bad:
                assert bad.status == 400
            async with http.post(offer_url, json={"sdp": "v=0\r\n", "type": "offer"}) as bad:
                assert bad.status == 400
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert "RTCPeerConnection" in html and "api/offer" in html
    assert "Answering from a script" in "".join(seen)
    assert proc.returncode == 130  # Ctrl-C, as shells report it
    assert "Traceback" not in stderr.decode() + stdout.decode()


def test_the_page_ships_with_the_package() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)
    assert "web/page.html" in project["tool"]["setuptools"]["package-data"]["pipecat_waves"]
    assert files("pipecat_waves.web").joinpath("page.html").is_file()
    extras = project["project"]["optional-dependencies"]
    assert extras["web"] == ["pipecat-ai[webrtc,silero]"]
    assert any("web" in dep for dep in extras["dev"])
