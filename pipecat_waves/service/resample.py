"""Serving any pipeline output rate from the few rates Waves offers.

Waves produces 8, 16, 24 or 44.1 kHz; WebRTC transports commonly run at
48 kHz, and other transports at rates of their own. :func:`wire_rate_for`
picks the offered rate to ask for, and :class:`StreamResampler` converts the
audio as it streams in. The resampler keeps its filter state from one chunk
to the next, so the chunk edges the server chose leave no trace (no clicks):
the concatenated output is what resampling the whole reply at once would give.
"""

from __future__ import annotations

import numpy as np
import soxr

from pipecat_waves.protocol.constants import SAMPLE_RATES

#: Output rates served by resampling. Below 8 kHz speech loses words; above
#: 192 kHz no audio device plays. Anything outside is a configuration mistake.
MIN_OUTPUT_RATE = 8000
MAX_OUTPUT_RATE = 192000

#: soxr's "high quality" preset: transparent for speech, and cheap enough to
#: run on every chunk of every session (its delay is a few milliseconds).
QUALITY = "HQ"


def wire_rate_for(rate: int) -> int:
    """The rate to ask Waves for when the pipeline plays at ``rate``.

    An offered rate is used as is. Otherwise the lowest offered rate at or
    above ``rate`` keeps every frequency the pipeline can carry, at the least
    cost; above the highest offered rate, the highest.

    Raises:
        ValueError: ``rate`` is not a sensible output rate.
    """
    if rate in SAMPLE_RATES:
        return rate
    if not MIN_OUTPUT_RATE <= rate <= MAX_OUTPUT_RATE:
        raise ValueError(
            f"An output rate of {rate} Hz makes no sense for speech; use a rate from "
            f"{MIN_OUTPUT_RATE} to {MAX_OUTPUT_RATE} Hz (Waves itself produces "
            f"{', '.join(map(str, SAMPLE_RATES))} Hz; other rates are resampled)."
        )
    higher = [offered for offered in SAMPLE_RATES if offered >= rate]
    return min(higher) if higher else max(SAMPLE_RATES)


class StreamResampler:
    """Resamples one stream of PCM16 mono, chunk by chunk, without edge artefacts.

    One instance per stream (per reply): a new reply must not start with the
    filter state of the one before. The filter delays the output by a few
    milliseconds; :meth:`flush` releases that tail at the end of the stream.
    """

    __slots__ = ("_stream",)

    def __init__(self, in_rate: int, out_rate: int, quality: str = QUALITY) -> None:
        """Create the resampler.

        Args:
            in_rate: Rate of the audio fed in, in Hz.
            out_rate: Rate of the audio given back, in Hz.
            quality: soxr quality preset.
        """
        # Float inside: soxr's own int16 output adds dither, so even silence
        # would come back as noise.
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)

    def feed(self, pcm: bytes) -> bytes:
        """Resample whole PCM16 samples; may return ``b""`` while the filter fills."""
        if not pcm:
            return b""
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        return _to_pcm16(self._stream.resample_chunk(samples, last=False))

    def flush(self) -> bytes:
        """End the stream: return the audio still held in the filter."""
        empty = np.zeros(0, dtype=np.float32)
        return _to_pcm16(self._stream.resample_chunk(empty, last=True))


def _to_pcm16(samples: np.ndarray) -> bytes:
    """Round to PCM16, clipping the overshoot a filter adds near full scale."""
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()
