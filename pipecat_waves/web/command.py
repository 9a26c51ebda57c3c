"""``pipecat-waves demo --web``: serve the page and a bot per browser, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import sys
from functools import partial

from pipecat.services.tts_service import TTSService
from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection

from pipecat_waves import WavesTTSService
from pipecat_waves.cli.commands import CliError, Endpoint, api_key_from, command_logs, open_endpoint
from pipecat_waves.cli.interrupt import EXIT_INTERRUPTED, run_interruptible
from pipecat_waves.web.bot import OUT_RATE, run_bot
from pipecat_waves.web.server import WebDemoServer


def make_tts(endpoint: Endpoint, voice: str) -> TTSService:
    """A ``WavesTTSService`` on ``endpoint`` (the local server, or the Waves API with a key)."""
    return WavesTTSService(
        api_key=endpoint.api_key or "",
        base_url=endpoint.ws_base,
        sample_rate=OUT_RATE,
        settings=WavesTTSService.Settings(voice=voice),
    )


async def serve_web_demo(
    *,
    host: str,
    port: int,
    api_key: str | None,
    base_url: str | None = None,
    voice: str = "avery",
    backend: str = "piper",
) -> None:
    """Serve the page and run a bot per browser connection until cancelled.

    Raises:
        CliError: The voice or the address cannot be used; one line says why.
    """
    openai_api_key = _openai_key()
    async with open_endpoint(api_key, base_url, backend) as endpoint:

        async def bot(connection: SmallWebRTCConnection) -> None:
            await run_bot(
                connection, partial(make_tts, endpoint, voice), openai_api_key=openai_api_key
            )

        server = WebDemoServer(bot, host=host, port=port)
        try:
            await server.start()
        except OSError as e:
            raise CliError(_bind_error(host, port, e)) from None
        try:
            voice_note = "offline Piper voice" if backend == "piper" else "test tones"
            offline = f" (no WAVES_API_KEY set: {voice_note})" if endpoint.local else ""
            print(f"Speaking through {endpoint.describe()}{offline}.")
            if openai_api_key:
                print("Listening and answering with OpenAI (OPENAI_API_KEY is set).")
            else:
                print("Answering from a script (set OPENAI_API_KEY for a real LLM).")
            print(f"Open {server.url} in Chrome, Edge or Firefox and press Start.")
            print("Ctrl-C to stop.", flush=True)
            await asyncio.Event().wait()
        finally:
            await server.stop()


def _openai_key() -> str | None:
    """``OPENAI_API_KEY``, when it is set and Pipecat's OpenAI services can be imported.

    Raises:
        CliError: The key is set but the ``openai`` extra is missing.
    """
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if not key:
        return None
    try:
        import pipecat.services.openai.llm  # noqa: F401
    except ImportError:
        raise CliError(
            "OPENAI_API_KEY is set but Pipecat's OpenAI services are missing: "
            'pip install "pipecat-ai[openai]"'
        ) from None
    return key


def _bind_error(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use; pick another with --port (0: any)"
    return f"cannot listen on {host}:{port} ({error.strerror or error}); check --host and --port"


def run(args: argparse.Namespace) -> int:
    """Run ``pipecat-waves demo --web`` for parsed ``args``.

    Returns:
        The process exit code (130 after Ctrl-C).
    """
    try:
        with command_logs(args.verbose):
            run_interruptible(
                serve_web_demo(
                    host=args.host,
                    port=args.port,
                    api_key=api_key_from(args.api_key),
                    base_url=args.base_url,
                    voice=args.voice,
                    backend=args.backend,
                )
            )
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0
