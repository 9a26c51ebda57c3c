"""Server-side continuation buffering, without I/O.

A continuation is a stream of text fragments that share a ``context_id``. The
server holds them in a per-context buffer and *releases* a segment to
synthesis when one of four rules fires:

(a) a fragment arrives with ``continue: false``: everything buffered, plus
    that fragment, is released (a closing frame with nothing buffered
    releases nothing and gets no reply at all);
(b) the buffer ends a sentence and is at least ``min_sentence_chars`` long;
(c) ``max_buffer_delay_ms`` has passed since the first still-buffered
    fragment arrived (later fragments do not restart the clock);
(d) the buffer is longer than ``max_chunk_chars``: the longest prefix that
    ends at a word boundary within the limit is released.

Fragments are joined exactly as sent. The clock is injected (float seconds),
so every rule can be exercised by plain unit tests; the server arms a timer
at :meth:`ContinuationBuffer.next_deadline` and calls
:meth:`ContinuationBuffer.poll` when it fires.

Context-less *legacy* buffering shares the machinery under the key ``None``:
``continue: true`` buffers, ``flush: true`` or ``continue: false`` releases,
and only the size rule (and an optional flush delay) applies in between.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pipecat_waves.protocol.constants import DEFAULT_MAX_BUFFER_DELAY_MS
from pipecat_waves.protocol.text import ends_sentence, word_cut

M = TypeVar("M")

#: Shortest buffer (stripped) that a sentence boundary releases by default.
DEFAULT_MIN_SENTENCE_CHARS = 8

#: Longest segment the server releases by default. The real limit is
#: undocumented; it sits well below the 250 characters a client may send in
#: one fragment, so that a fragment the client deems small can still come back
#: as several segments. A client must never count segments against fragments.
STRICT_MAX_CHUNK_CHARS = 120


class ReleaseReason(enum.Enum):
    """Which rule released a segment."""

    END = "end"  # (a) continue:false, or legacy flush
    SENTENCE = "sentence"  # (b)
    DELAY = "delay"  # (c)
    SIZE = "size"  # (d)


@dataclass(frozen=True)
class Release(Generic[M]):
    """A segment of text handed to synthesis.

    Attributes:
        context_id: The context it belongs to (``None`` for legacy buffering).
        text: The released text, exactly as the fragments were sent.
        meta: The caller's data attached to the last fragment that contributed
            to ``text`` (the server keeps the request there, for echoes).
        reason: The rule that fired.
    """

    context_id: str | None
    text: str
    meta: M | None
    reason: ReleaseReason


@dataclass
class _Piece(Generic[M]):
    """One buffered fragment (or what is left of it after a size cut)."""

    text: str
    deadline: float | None  # None: no time limit (legacy without a flush delay)
    meta: M | None


@dataclass
class _Context(Generic[M]):
    pieces: list[_Piece[M]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)

    @property
    def deadline(self) -> float | None:
        # The earliest deadline governs: no fragment waits longer than its own
        # delay, and a later fragment never pushes an earlier one back.
        deadlines = [p.deadline for p in self.pieces if p.deadline is not None]
        return min(deadlines) if deadlines else None


class ContinuationBuffer(Generic[M]):
    """Per-context text buffers and the rules that release them.

    Args:
        min_sentence_chars: Rule (b) fires only for buffers at least this long
            (leading and trailing whitespace not counted).
        max_chunk_chars: Rule (d) threshold; no released segment is longer,
            unless a single word is.
        default_delay_ms: ``max_buffer_delay_ms`` of fragments that give none.
    """

    def __init__(
        self,
        *,
        min_sentence_chars: int = DEFAULT_MIN_SENTENCE_CHARS,
        max_chunk_chars: int = STRICT_MAX_CHUNK_CHARS,
        default_delay_ms: int = DEFAULT_MAX_BUFFER_DELAY_MS,
    ) -> None:
        if max_chunk_chars < 1:
            raise ValueError("max_chunk_chars must be positive")
        self.min_sentence_chars = min_sentence_chars
        self.max_chunk_chars = max_chunk_chars
        self.default_delay_ms = default_delay_ms
        self._contexts: dict[str | None, _Context[M]] = {}
        self._open: set[str | None] = set()

    # ------------------------------------------------------------------ input

    def feed(
        self,
        context_id: str | None,
        text: str,
        *,
        now: float,
        more: bool,
        delay_ms: int | None = None,
        meta: M | None = None,
    ) -> list[Release[M]]:
        """Add a continuation fragment and return whatever it releases.

        Args:
            context_id: The fragment's context.
            text: The fragment, joined to the buffer as is.
            now: Current time in seconds.
            more: The fragment's ``continue`` flag.
            delay_ms: Its ``max_buffer_delay_ms`` (``None``: the default).
            meta: Caller data carried to the release this fragment ends up in.
        """
        delay = self.default_delay_ms if delay_ms is None else delay_ms
        return self._add(
            context_id, text, now + delay / 1000.0, meta, now=now, end=not more, sentences=True
        )

    def feed_legacy(
        self,
        text: str,
        *,
        now: float,
        flush: bool,
        more: bool,
        flush_delay_ms: int | None = None,
        meta: M | None = None,
    ) -> list[Release[M]]:
        """Add a context-less (legacy) fragment.

        Args:
            text: The fragment.
            now: Current time in seconds.
            flush: The ``flush`` flag: release everything now.
            more: The ``continue`` flag; ``False`` also releases everything.
            flush_delay_ms: ``max_buffer_flush_ms`` if given: release after it.
            meta: Caller data carried to the release.
        """
        deadline = None if flush_delay_ms is None else now + flush_delay_ms / 1000.0
        end = flush or not more
        return self._add(None, text, deadline, meta, now=now, end=end, sentences=False)

    def cancel(self, context_id: str | None) -> str:
        """Drop the context's buffered text; the context stays open.

        Returns:
            The text that was dropped.
        """
        ctx = self._contexts.pop(context_id, None)
        return ctx.text if ctx else ""

    def close(self, context_id: str | None) -> str:
        """End the context now, dropping its buffered text.

        Returns:
            The text that was dropped.
        """
        self._open.discard(context_id)
        return self.cancel(context_id)

    def close_all(self) -> None:
        """Forget every context (the connection went away)."""
        self._contexts.clear()
        self._open.clear()

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        """Earliest time at which :meth:`poll` will release something, if any."""
        deadlines = [d for ctx in self._contexts.values() if (d := ctx.deadline) is not None]
        return min(deadlines) if deadlines else None

    def poll(self, now: float) -> list[Release[M]]:
        """Release every buffer whose delay has run out by ``now`` (rule c)."""
        released: list[Release[M]] = []
        for context_id in list(self._contexts):
            deadline = self._contexts[context_id].deadline
            if deadline is not None and deadline <= now:
                released += self._release_all(context_id, ReleaseReason.DELAY)
        return released

    # ------------------------------------------------------------ inspection

    def buffered(self, context_id: str | None) -> str:
        """Text currently held for ``context_id``."""
        ctx = self._contexts.get(context_id)
        return ctx.text if ctx else ""

    def is_open(self, context_id: str | None) -> bool:
        """Whether the context has started and not yet ended."""
        return context_id in self._open

    @property
    def contexts(self) -> list[str | None]:
        """Contexts that hold buffered text."""
        return list(self._contexts)

    # ------------------------------------------------------------- internals

    def _add(
        self,
        context_id: str | None,
        text: str,
        deadline: float | None,
        meta: M | None,
        *,
        now: float,
        end: bool,
        sentences: bool,
    ) -> list[Release[M]]:
        self._open.add(context_id)
        ctx = self._contexts.setdefault(context_id, _Context())
        if text:
            ctx.pieces.append(_Piece(text, deadline, meta))
        elif ctx.pieces and meta is not None:
            # An empty closing fragment adds no text but is still the last
            # fragment of the segment: its data (request id) is the one to echo.
            ctx.pieces[-1].meta = meta
        released = self._cut_oversize(context_id)
        if end:
            released += self._release_all(context_id, ReleaseReason.END)
            self._open.discard(context_id)
        else:
            released += self._apply_rules(context_id, now, sentences)
        if not ctx.pieces:
            self._contexts.pop(context_id, None)
        return released

    def _apply_rules(self, context_id: str | None, now: float, sentences: bool) -> list[Release[M]]:
        ctx = self._contexts.get(context_id)
        if ctx is None or not ctx.pieces:
            return []
        text = ctx.text
        if sentences and ends_sentence(text) and len(text.strip()) >= self.min_sentence_chars:
            return self._release_all(context_id, ReleaseReason.SENTENCE)
        # Checked here as well as in poll(): a delay of 0 means "do not wait".
        deadline = ctx.deadline
        if deadline is not None and deadline <= now:
            return self._release_all(context_id, ReleaseReason.DELAY)
        return []

    def _cut_oversize(self, context_id: str | None) -> list[Release[M]]:
        ctx = self._contexts.get(context_id)
        released: list[Release[M]] = []
        while ctx is not None and len(text := ctx.text) > self.max_chunk_chars:
            cut = word_cut(text, self.max_chunk_chars)
            released.append(self._take(ctx, context_id, cut, ReleaseReason.SIZE))
        return [r for r in released if r.text.strip()]

    def _release_all(self, context_id: str | None, reason: ReleaseReason) -> list[Release[M]]:
        ctx = self._contexts.pop(context_id, None)
        if ctx is None or not ctx.pieces:
            return []
        released = self._take(ctx, context_id, len(ctx.text), reason)
        # Whitespace alone is nothing to speak; it is dropped, not released.
        return [released] if released.text.strip() else []

    @staticmethod
    def _take(
        ctx: _Context[M], context_id: str | None, n: int, reason: ReleaseReason
    ) -> Release[M]:
        """Remove the first ``n`` characters of the buffer as one release."""
        parts: list[str] = []
        meta: M | None = None
        remaining = n
        while remaining > 0 and ctx.pieces:
            piece = ctx.pieces[0]
            meta = piece.meta
            if len(piece.text) <= remaining:
                parts.append(piece.text)
                remaining -= len(piece.text)
                ctx.pieces.pop(0)
            else:
                parts.append(piece.text[:remaining])
                piece.text = piece.text[remaining:]
                remaining = 0
        return Release(context_id, "".join(parts), meta, reason)
