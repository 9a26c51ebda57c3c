"""Driving WavesHttpTTSService against the local server."""

from __future__ import annotations

from typing import Any

from pipecat.frames.frames import Frame

from pipecat_waves import WavesHttpTTSService
from pipecat_waves.server import LocalWavesServer
from tests.service.helpers import API_KEY, RATE


def make_http_service(server: LocalWavesServer, **kwargs: Any) -> WavesHttpTTSService:
    """An HTTP service pointed at ``server``."""
    kwargs.setdefault("sample_rate", RATE)
    kwargs.setdefault("api_key", API_KEY)
    return WavesHttpTTSService(base_url=server.base_url, **kwargs)


def sse_texts(server: LocalWavesServer) -> list[str]:
    """The text of every SSE request the server admitted or refused, in order."""
    return [r.body["text"] for r in server.http_requests if isinstance(r.body, dict)]


def first_of(frames: list[Frame], kind: type) -> Any:
    """The first frame of ``kind``."""
    return next(f for f in frames if isinstance(f, kind))
