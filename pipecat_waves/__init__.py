"""Smallest.ai Waves live text-to-speech for Pipecat.

``WavesTTSService`` streams an LLM's text over one persistent WebSocket and
pushes the audio downstream; an ``InterruptionFrame`` cancels the reply with no
reconnect and no stale audio. ``pipecat_waves.server`` is a local
Waves-compatible server for offline development and tests.
"""

from pipecat_waves.language import language_to_waves_language
from pipecat_waves.tts import WavesTTSService, WavesTTSSettings

__all__ = ["WavesTTSService", "WavesTTSSettings", "language_to_waves_language"]
__version__ = "0.1.0"
