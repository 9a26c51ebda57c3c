"""Smallest.ai Waves live text-to-speech for Pipecat.

``WavesTTSService`` streams an LLM's text over one persistent WebSocket and
pushes the audio downstream; an ``InterruptionFrame`` cancels the reply with no
reconnect and no stale audio. ``WavesHttpTTSService`` speaks whole sentences
over HTTP (server-sent events), for where a WebSocket does not fit.
``pipecat_waves.server`` is a local Waves-compatible server for offline
development and tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "FirstClause",
    "ServerTraits",
    "WavesHttpTTSService",
    "WavesTTSService",
    "WavesTTSSettings",
    "language_to_waves_language",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from pipecat_waves.protocol.traits import ServerTraits
    from pipecat_waves.service.first_clause import FirstClause
    from pipecat_waves.service.http import WavesHttpTTSService
    from pipecat_waves.service.language import language_to_waves_language
    from pipecat_waves.service.websocket import WavesTTSService, WavesTTSSettings


def __getattr__(name: str) -> Any:
    # Imported on first use, so the protocol core, the local server and the
    # command line do not pull in Pipecat (and its start-up banner) unless needed.
    if name in ("WavesTTSService", "WavesTTSSettings"):
        from pipecat_waves.service import websocket

        return getattr(websocket, name)
    if name == "FirstClause":
        from pipecat_waves.service.first_clause import FirstClause

        return FirstClause
    if name == "WavesHttpTTSService":
        from pipecat_waves.service.http import WavesHttpTTSService

        return WavesHttpTTSService
    if name == "ServerTraits":
        from pipecat_waves.protocol.traits import ServerTraits

        return ServerTraits
    if name == "language_to_waves_language":
        from pipecat_waves.service.language import language_to_waves_language

        return language_to_waves_language
    raise AttributeError(f"module 'pipecat_waves' has no attribute {name!r}")
