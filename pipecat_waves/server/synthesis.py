"""Running a backend off the event loop and cutting its audio into chunks."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

from pipecat_waves.protocol.constants import BYTES_PER_SAMPLE
from pipecat_waves.server.backends import SpeechBackend, Synthesis
from pipecat_waves.server.dicts import PronunciationDict, input_words, rewrite


async def synthesize(
    backend: SpeechBackend,
    text: str,
    *,
    voice_id: str,
    speed: float,
    sample_rate: int,
    dicts: tuple[PronunciationDict, ...] = (),
) -> Synthesis:
    """Synthesize in a worker thread so the loop keeps serving other sockets.

    Words the pronunciation dictionaries ``dicts`` list are spoken as their
    pronunciations; the word spans still name the words of ``text``.
    """
    if not dicts:
        return await asyncio.to_thread(
            backend.synthesize, text, voice_id=voice_id, speed=speed, sample_rate=sample_rate
        )
    rewritten = rewrite(text, dicts)
    synthesis = await asyncio.to_thread(
        backend.synthesize,
        rewritten.spoken,
        voice_id=voice_id,
        speed=speed,
        sample_rate=sample_rate,
    )
    return input_words(synthesis, rewritten)


def chunk_size(sample_rate: int, chunk_ms: float, *, odd: bool = False) -> int:
    """Bytes of PCM16 audio in ``chunk_ms``; made odd to split samples on purpose."""
    size = max(1, int(sample_rate * BYTES_PER_SAMPLE * chunk_ms / 1000))
    if odd and size % 2 == 0:
        size += 1
    return size


def split_audio(pcm: bytes, size: int) -> Iterator[bytes]:
    """Cut ``pcm`` into pieces of ``size`` bytes (the last may be shorter)."""
    for start in range(0, len(pcm), size):
        yield pcm[start : start + size]


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """Wrap mono PCM16 in a canonical 44-byte RIFF/WAVE header."""
    byte_rate = sample_rate * BYTES_PER_SAMPLE
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        sample_rate,
        byte_rate,
        BYTES_PER_SAMPLE,
        8 * BYTES_PER_SAMPLE,
        b"data",
        len(pcm),
    )
    return header + pcm
