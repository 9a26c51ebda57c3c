"""Options of the demo, kept apart so the command line can offer them without loading Pipecat."""

from __future__ import annotations

import argparse


def add_verbosity(
    parser: argparse.ArgumentParser,
    help_text: str = "show library logs: -v what happens once, -vv every detail",
) -> None:
    """Add ``-v``/``--verbose`` (repeatable) to ``parser``."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help=help_text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser`` (shared with ``pipecat-waves demo``)."""
    parser.add_argument(
        "-o", "--output", default="demo.wav", help="WAV file to write (default: %(default)s)"
    )
    parser.add_argument("--voice", default="avery", help="voice id (default: %(default)s)")
    parser.add_argument(
        "--api-key", help="Waves API key (default: $WAVES_API_KEY or $SMALLEST_API_KEY)"
    )
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--backend", choices=("piper", "tone"), default="piper", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help="talk to the bot in a browser instead: serve a page (needs pipecat-waves[web])",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="with --web: interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=7860,
        help="with --web: port, 0 picks one (default: %(default)s)",
    )
    add_verbosity(parser)
