"""Command line: ``pipecat-waves serve`` runs the local Waves-compatible server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from loguru import logger

from pipecat_waves.server.backends import SpeechBackend

#: Environment variable read when ``--api-key`` is not given.
API_KEY_ENV = "WAVES_API_KEY"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipecat-waves", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the local Waves-compatible TTS server")
    serve.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    serve.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one")
    serve.add_argument(
        "--api-key", help=f"bearer token clients must send (default: ${API_KEY_ENV})"
    )
    serve.add_argument("--no-auth", action="store_true", help="accept every client without a key")
    serve.add_argument(
        "--backend",
        choices=("piper", "tone"),
        default="piper",
        help="piper: real offline speech; tone: instant test tones (default: %(default)s)",
    )
    return parser


def _make_backend(name: str) -> SpeechBackend:
    if name == "tone":
        from pipecat_waves.server.backends import ToneBackend

        return ToneBackend()
    from pipecat_waves.server.piper_backend import PiperBackend

    return PiperBackend()


async def _serve(host: str, port: int, api_key: str | None, backend: SpeechBackend) -> None:
    from pipecat_waves.server import LocalWavesServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not every platform lets the loop handle signals; Ctrl-C still works there.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with LocalWavesServer(api_key, backend=backend, host=host, port=port) as server:
        auth = "bearer key required" if api_key else "no authentication"
        logger.info(
            f"serving Waves live TTS at {server.ws_base_url}/waves/v1/tts/live ({auth}); "
            "Ctrl-C to stop"
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.no_auth and args.api_key:
        parser.error("--api-key and --no-auth contradict each other")
    if args.no_auth:
        api_key = None
    elif api_key is None:
        parser.error(f"give --api-key (or set {API_KEY_ENV}), or --no-auth")
    try:
        backend = _make_backend(args.backend)
        asyncio.run(_serve(args.host, args.port, api_key, backend))
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as e:
        logger.error(f"cannot serve: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
