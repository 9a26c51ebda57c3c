"""PCM16 alignment of audio that arrives cut at arbitrary byte offsets."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pipecat_waves.protocol.audio import PcmAligner, duration_s

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick


def random_splits(data: bytes, rng: random.Random, max_piece: int) -> list[bytes]:
    """Cut ``data`` into pieces of 0 to ``max_piece`` bytes (empty pieces included)."""
    pieces = []
    pos = 0
    while pos < len(data):
        size = rng.randint(0, max_piece)
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


def samples_of(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


@pytest.fixture
def stream() -> bytes:
    """Distinctive 16-bit samples covering the full range (12 kB)."""
    rng = np.random.default_rng(1234)
    samples = rng.integers(-32768, 32768, size=6000, dtype=np.int64).astype("<i2")
    return samples.tobytes()


def test_whole_samples_pass_straight_through() -> None:
    aligner = PcmAligner()
    assert aligner.feed(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"
    assert aligner.pending == 0


def test_half_sample_waits_for_its_other_half() -> None:
    aligner = PcmAligner()
    assert aligner.feed(b"\x01\x02\x03") == b"\x01\x02"
    assert aligner.pending == 1
    assert aligner.feed(b"\x04\x05") == b"\x03\x04"
    assert aligner.pending == 1
    assert aligner.feed(b"\x06") == b"\x05\x06"
    assert aligner.pending == 0


def test_single_bytes_make_samples_every_second_byte() -> None:
    aligner = PcmAligner()
    out = [aligner.feed(bytes([b])) for b in range(10)]
    assert out == [
        b"",
        b"\x00\x01",
        b"",
        b"\x02\x03",
        b"",
        b"\x04\x05",
        b"",
        b"\x06\x07",
        b"",
        b"\x08\x09",
    ]


def test_empty_feed_returns_nothing_and_keeps_the_carry() -> None:
    aligner = PcmAligner()
    assert aligner.feed(b"") == b""
    assert aligner.feed(b"\xaa") == b""
    assert aligner.feed(b"") == b""
    assert aligner.pending == 1
    assert aligner.feed(b"\xbb") == b"\xaa\xbb"


def test_reset_drops_the_pending_byte() -> None:
    aligner = PcmAligner()
    aligner.feed(b"\x01\x02\x03")
    assert aligner.reset() == b"\x03"
    assert aligner.pending == 0
    # The next segment starts on a sample boundary again.
    assert aligner.feed(b"\x10\x20") == b"\x10\x20"


def test_reset_with_nothing_pending() -> None:
    aligner = PcmAligner()
    assert aligner.reset() == b""
    assert aligner.feed(b"\x01\x02") == b"\x01\x02"


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("max_piece", [1, 3, 7, 301, 4801, 20000])
def test_random_splits_reproduce_the_exact_samples(
    stream: bytes, seed: int, max_piece: int
) -> None:
    rng = random.Random(seed * 1000 + max_piece)
    aligner = PcmAligner()
    out = []
    for piece in random_splits(stream, rng, max_piece):
        got = aligner.feed(piece)
        assert len(got) % 2 == 0
        out.append(got)
    assert aligner.pending == 0
    assert b"".join(out) == stream
    assert np.array_equal(samples_of(b"".join(out)), samples_of(stream))


@pytest.mark.parametrize("seed", range(10))
def test_odd_stream_keeps_its_last_byte_pending(stream: bytes, seed: int) -> None:
    rng = random.Random(seed)
    data = stream + b"\x7f"
    aligner = PcmAligner()
    out = b"".join(aligner.feed(p) for p in random_splits(data, rng, 999))
    assert out == stream
    assert aligner.pending == 1
    assert aligner.reset() == b"\x7f"


def test_output_never_lags_more_than_one_byte(stream: bytes) -> None:
    rng = random.Random(99)
    aligner = PcmAligner()
    fed = emitted = 0
    for piece in random_splits(stream[:4000], rng, 17):
        fed += len(piece)
        emitted += len(aligner.feed(piece))
        assert fed - emitted == aligner.pending
        assert aligner.pending in (0, 1)


def test_segments_separated_by_reset(stream: bytes) -> None:
    # Segment one ends on an odd byte (a broken server); the reset keeps it
    # from shifting every sample of segment two.
    rng = random.Random(7)
    first, second = stream[:1001], stream[1002:3002]
    aligner = PcmAligner()
    out1 = b"".join(aligner.feed(p) for p in random_splits(first, rng, 50))
    assert aligner.reset() == first[-1:]
    out2 = b"".join(aligner.feed(p) for p in random_splits(second, rng, 50))
    assert out1 == first[:-1]
    assert out2 == second


@pytest.mark.parametrize(
    ("num_bytes", "rate", "expected"),
    [
        (0, 16000, 0.0),
        (32000, 16000, 1.0),
        (48000, 24000, 1.0),
        (88200, 44100, 1.0),
        (8000, 8000, 0.5),
    ],
)
def test_duration(num_bytes: int, rate: int, expected: float) -> None:
    assert duration_s(num_bytes, rate) == pytest.approx(expected)
