"""One barge-in heard in headless Chromium, run inside a loopback-only network namespace.

Run by :func:`tests.support.ear.record_barge_in` as
``unshare -n python -m tests.support.ear CONFIG.json``; everything
below happens in a network namespace whose only interface is ``lo``:

1. ``lo`` comes up, and aiortc is told to gather its host candidate on
   127.0.0.1: aioice skips that address when it lists the host's interfaces
   (a real deployment never wants it), and has no option to keep it, so the
   session replaces that listing with 127.0.0.1 alone. Chromium offers
   loopback candidates with ``--allow-loopback-in-peer-connection``. Every
   socket of the session is then on 127.0.0.1.
2. The local Waves server (tone backend) and the web demo's server start, the
   bot speaking through the service the config names.
3. Chromium opens the page with a fake microphone (silence, the phrase,
   silence); the page records the microphone and the bot's track in one
   AudioContext and POSTs the recording back.
4. The recording, the page's clock pairs and the bot's own timestamps are
   written to the output directory.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The page's recording comes back here.
REPORT_PATH = "/api/recording"
#: The only address of the session: the bot's ICE host candidate too.
ICE_ADDRESS = "127.0.0.1"


@dataclass
class SessionConfig:
    """What one session does.

    Attributes:
        out: Directory for the results.
        replies: The bot's script (tone backend: every word a tone).
        phrase: The fake user's phrase.
        lead_s: Silence on the fake microphone before the phrase.
        record_s: How long the page records.
        service: ``"ours"`` (``WavesTTSService``) or ``"theirs"`` (Pipecat's
            ``SmallestTTSService``).
        server: ``ServerBehaviour`` fields for the local server.
        chromium: The browser binary.
        timeout_s: Longest wait for the page's recording.
        backend: The local server's voice: ``"tone"`` (every word a tone) or
            ``"piper"`` (the offline voice; the recording can then only be read
            by its loudness).
    """

    out: str
    replies: list[str]
    phrase: str
    lead_s: float = 5.0
    record_s: float = 16.0
    service: str = "ours"
    server: dict[str, Any] = field(default_factory=dict)
    chromium: str = "/usr/bin/chromium"
    timeout_s: float = 60.0
    backend: str = "tone"


def chromium_args(binary: str, profile: Path, mic_wav: Path, url: str) -> list[str]:
    """Headless Chromium with a fake microphone playing ``mic_wav`` once, opening ``url``."""
    return [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--enable-logging=stderr",
        url,
    ]


def loopback_only() -> None:
    """Bring ``lo`` up and gather ICE candidates on it; refuse any other interface."""
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        raise SystemExit(f"not in a loopback-only network namespace (interfaces: {interfaces})")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    _gather_on_loopback()


def _gather_on_loopback() -> None:
    """Make aiortc's host candidate :data:`ICE_ADDRESS`.

    aioice lists the host's addresses minus 127.0.0.1, so in a namespace with
    only ``lo`` it would offer nothing. Its connections call the module's
    ``get_host_addresses``, which is replaced here, for this process only.
    """
    import aioice.ice

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [ICE_ADDRESS] if use_ipv4 else []

    aioice.ice.get_host_addresses = loopback


def _service(kind: str, ws_base: str, api_key: str) -> Any:
    from pipecat_waves import WavesTTSService
    from pipecat_waves.web.bot import OUT_RATE

    if kind == "ours":
        return WavesTTSService(
            api_key=api_key,
            base_url=ws_base,
            sample_rate=OUT_RATE,
            settings=WavesTTSService.Settings(voice="avery"),
        )
    if kind == "theirs":
        from pipecat.services.smallest.tts import SmallestTTSService

        return SmallestTTSService(
            api_key=api_key,
            base_url=ws_base,
            sample_rate=OUT_RATE,
            settings=SmallestTTSService.Settings(voice="meher"),
        )
    raise ValueError(f"unknown service {kind!r}")


def _event_log(events: list[list[Any]]) -> Any:
    """A Pipecat observer writing the bot's moments as ``[wall-clock s, kind, detail]``."""
    from pipecat.frames.frames import (
        InterruptionFrame,
        LLMFullResponseStartFrame,
        TTSAudioRawFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.services.tts_service import TTSService
    from pipecat.transports.base_output import BaseOutputTransport
    from pipecat.turns.user_turn_processor import UserTurnProcessor

    class EventLog(BaseObserver):
        async def on_push_frame(self, data: FramePushed) -> None:
            frame, source, now = data.frame, data.source, time.time()
            if isinstance(source, VADProcessor) and isinstance(
                frame, VADUserStartedSpeakingFrame | VADUserStoppedSpeakingFrame
            ):
                events.append([now, type(frame).__name__, ""])
            elif isinstance(frame, InterruptionFrame) and isinstance(source, UserTurnProcessor):
                events.append([now, "InterruptionFrame", ""])
            elif isinstance(frame, TTSAudioRawFrame) and isinstance(source, TTSService):
                events.append([now, "tts_audio", len(frame.audio)])
            elif isinstance(frame, TTSAudioRawFrame) and isinstance(source, BaseOutputTransport):
                events.append([now, "transport_audio", len(frame.audio)])
            elif isinstance(frame, LLMFullResponseStartFrame):
                events.append([now, "reply_started", source.name])

    return EventLog()


async def run_session(config: SessionConfig) -> None:
    """Run the session; write ``recording.npz``, ``meta.json`` and ``bot_events.json``."""
    from aiohttp import web

    from pipecat_waves.server import LocalWavesServer, ServerBehaviour, ToneBackend
    from pipecat_waves.web.bot import BotOptions, run_bot
    from pipecat_waves.web.server import WebDemoServer
    from tests.support.ear.mic import write_fake_mic

    out = Path(config.out)
    mic = write_fake_mic(out / "mic.wav", config.phrase, lead_s=config.lead_s)
    events: list[list[Any]] = []
    report: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    key = secrets.token_urlsafe(16)
    behaviour = ServerBehaviour(**config.server)
    options = BotOptions(replies=tuple(config.replies))

    async def received(request: web.Request) -> web.Response:
        if not report.done():
            report.set_result(await request.content.read())  # past the 1 MiB body limit
        return web.Response(text="ok")

    if config.backend == "piper":
        from pipecat_waves.server.piper_backend import PiperBackend

        backend: Any = PiperBackend()
        backend.warm_up()
    else:
        backend = ToneBackend()
    async with LocalWavesServer(key, backend=backend, behaviour=behaviour) as waves:

        async def bot(connection: Any) -> None:
            await run_bot(
                connection,
                lambda: _service(config.service, waves.ws_base_url, key),
                options,
                observers=[_event_log(events)],
            )

        server = WebDemoServer(bot)
        server.app.router.add_post(REPORT_PATH, received)
        async with server:
            url = f"{server.url}?autostart&raw&record={config.record_s}&report={REPORT_PATH}"
            with (out / "chromium.log").open("wb") as log:
                browser = await asyncio.create_subprocess_exec(
                    *chromium_args(config.chromium, out / "profile", mic.path, url),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    body = await asyncio.wait_for(report, config.timeout_s)
                except TimeoutError:
                    raise SystemExit(
                        f"no recording from the page within {config.timeout_s:.0f} s; "
                        f"see {out / 'chromium.log'}"
                    ) from None
                finally:
                    browser.terminate()
                    try:
                        await asyncio.wait_for(browser.wait(), 5)
                    except TimeoutError:
                        browser.kill()
                        await browser.wait()
    (size,) = struct.unpack("<I", body[:4])
    meta = json.loads(body[4 : 4 + size])
    if "error" in meta:
        raise SystemExit(f"the page failed: {meta['error']} (events: {meta['events']})")
    pcm = np.frombuffer(body[4 + size :], dtype="<i2").reshape(-1, 2).astype(np.float32) / 32767
    np.savez_compressed(out / "recording.npz", mic=pcm[:, 0], bot=pcm[:, 1])
    meta["fake_mic"] = asdict(mic) | {"path": str(mic.path)}
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "bot_events.json").write_text(json.dumps(events))


def main() -> None:
    """Run the session a config file describes (inside ``unshare -n``)."""
    config = SessionConfig(**json.loads(Path(sys.argv[1]).read_text()))
    loopback_only()
    from pipecat_waves.log import logger

    logger.remove()
    logger.add(Path(config.out) / "bot.log", level="DEBUG")
    asyncio.run(run_session(config))


if __name__ == "__main__":
    main()
