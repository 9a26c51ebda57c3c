"""A frame recorder for the edges of a pipeline, shared by tests and benchmarks.

A :class:`Recorder` sits on each side of the service under test
(``[inlet, service, outlet]``), passes every frame on unchanged and stamps it
with ``time.perf_counter()``. Tests read the stamped frames back to judge what
a listener heard and when; benchmarks measure latencies between the stamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


@dataclass(frozen=True)
class Stamped:
    """A frame, when it passed a recorder (``time.perf_counter()``) and which way."""

    t: float
    frame: Frame
    direction: FrameDirection = FrameDirection.DOWNSTREAM


class Recorder(FrameProcessor):
    """Passes every frame on and remembers it with a ``time.perf_counter()`` stamp.

    Direct mode: the frame is stamped and handed on in the same call, when the
    neighbour pushes it rather than when a queue gets round to it, so the
    recorder adds no queue hop of its own to what is measured, and gaps between
    stamps are the gaps a transport right behind the service would see.
    ``ErrorFrame``\\ s are kept whichever way they go: a service pushes them
    upstream (through the inlet) or downstream (through the outlet).

    Attributes:
        entries: Every frame, either way, in order.
        frames: The frames that went downstream, in order.
        errors: Every ``ErrorFrame``, either way, in order.
        audio_bytes: Bytes of downstream audio so far.
        last_audio_t: Stamp of the last downstream audio frame (NaN before one).
    """

    def __init__(self, name: str) -> None:
        """Create a recorder.

        Args:
            name: Processor name, for Pipecat's logs.
        """
        super().__init__(name=name, enable_direct_mode=True)
        self.entries: list[Stamped] = []
        self.frames: list[Stamped] = []
        self.errors: list[Stamped] = []
        self.audio_bytes = 0
        self.last_audio_t = math.nan
        self._changed = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Stamp ``frame`` and pass it on unchanged."""
        await super().process_frame(frame, direction)
        stamped = Stamped(time.perf_counter(), frame, direction)
        self.entries.append(stamped)
        if isinstance(frame, ErrorFrame):
            self.errors.append(stamped)
        if direction == FrameDirection.DOWNSTREAM:
            self.frames.append(stamped)
            if isinstance(frame, TTSAudioRawFrame):
                self.audio_bytes += len(frame.audio)
                self.last_audio_t = stamped.t
            self._changed.set()
        await self.push_frame(frame, direction)

    def downstream(self) -> list[Stamped]:
        """Frames that went downstream, in order."""
        return list(self.frames)

    def audio(self) -> list[Stamped]:
        """The downstream audio frames, in order."""
        return [s for s in self.frames if isinstance(s.frame, TTSAudioRawFrame)]

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` holds, re-checked on every downstream frame.

        Returns:
            ``False`` if it still did not hold after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True
