"""PCM16 stream alignment.

The server cuts audio wherever it likes, so a chunk can end half-way through a
16-bit sample. Handing such a chunk downstream would shift every later sample
by one byte (loud noise), so the odd byte waits for the next chunk of the same
segment.
"""

from __future__ import annotations

from pipecat_waves.protocol.constants import BYTES_PER_SAMPLE


class PcmAligner:
    """Reassembles a byte stream into whole 16-bit little-endian samples."""

    __slots__ = ("_carry",)

    def __init__(self) -> None:
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        """Add bytes; return every whole sample now available (possibly ``b""``)."""
        if self._carry:
            data = self._carry + data
        whole = len(data) - len(data) % BYTES_PER_SAMPLE
        self._carry = data[whole:]
        return data[:whole] if whole != len(data) else data

    @property
    def pending(self) -> int:
        """Number of bytes held back, waiting for the rest of their sample."""
        return len(self._carry)

    def reset(self) -> bytes:
        """Forget the held-back byte (a segment ended); return what was dropped."""
        dropped, self._carry = self._carry, b""
        return dropped


def duration_s(num_bytes: int, sample_rate: int) -> float:
    """Seconds of mono PCM16 audio in ``num_bytes`` at ``sample_rate``."""
    return num_bytes / (BYTES_PER_SAMPLE * sample_rate)
