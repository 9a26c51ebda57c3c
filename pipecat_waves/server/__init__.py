"""A local Waves-compatible TTS server (live WebSocket, SSE, sync, voices)."""

from pipecat_waves.server.app import LocalWavesServer
from pipecat_waves.server.backends import SpeechBackend, Synthesis, ToneBackend, WordSpan
from pipecat_waves.server.behaviour import ServerBehaviour
from pipecat_waves.server.records import ConnectionRecord, HttpRequestRecord, SegmentRecord

__all__ = [
    "ConnectionRecord",
    "HttpRequestRecord",
    "LocalWavesServer",
    "SegmentRecord",
    "ServerBehaviour",
    "SpeechBackend",
    "Synthesis",
    "ToneBackend",
    "WordSpan",
]
