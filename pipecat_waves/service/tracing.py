"""OpenTelemetry spans for replies, the ones Pipecat's own TTS services produce.

With OpenTelemetry installed and ``enable_tracing=True`` on the pipeline, a
service decorated with :func:`traced_replies` produces one ``tts`` span per
reply (per audio context), carrying the attributes Pipecat's ``traced_tts``
sets: ``text``, ``voice_id``, ``gen_ai.request.model``, ``metrics.character_count``,
``metrics.ttfb`` and the ``settings.*`` and ``gen_ai.*`` attributes of
``add_tts_span_attributes``. The span is a child of the turn span Pipecat's
turn tracing opens, as theirs are.

Where it differs from ``traced_tts``, it is in when a span ends, so that each
ends exactly once and nothing is lost:

* a reply's span ends when its audio context has finished playing (right
  after its ``TTSStoppedFrame``), not when the server has finished sending,
  so the reply's TTFB always lands on it, even for a reply so short that its
  audio is all in before any of it plays;
* every reply an interruption drops ends with ``tts.interrupted``, the one
  playing and any queued behind it (``traced_tts`` ends only the playing
  one; the others are never exported);
* a reply the server refused ends with an error status and ``error.type``;
* anything still open when the service is cleaned up (a cancelled pipeline)
  is ended then.

``metrics.ttfb`` is measured here, from the reply's audio context opening to
its first audio leaving the service (the points Pipecat's TTFB metric uses),
so it is there whether or not the pipeline enables metrics.

Only public members are used: the hooks ``create_audio_context``,
``append_to_audio_context``, ``on_audio_context_completed``,
``on_audio_context_interrupted``, ``push_frame`` and ``cleanup`` of
``TTSService``, ``FrameProcessorSetup.enable_tracing`` and
``tracing_context``, and OpenTelemetry's API.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.services.tts_service import TTSService
from pipecat.utils.tracing.service_attributes import add_tts_span_attributes

from pipecat_waves.credentials import scrub
from pipecat_waves.log import logger

try:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode
except ImportError:  # tracing is optional: pip install "pipecat-waves[tracing]"
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

__all__ = ["ReplySpans", "traced_replies"]

#: Instrumentation scope of the spans: Pipecat's own, so they sit beside its spans.
TRACER_NAME = "pipecat"

S = TypeVar("S", bound=type[TTSService])


@dataclass
class _Open:
    """A reply's span while it is open."""

    span: Span
    opened_at: float
    texts: list[str] = field(default_factory=list)
    ttfb_recorded: bool = False


class ReplySpans:
    """The open ``tts`` span of each reply of one service.

    Every method is a no-op while tracing is off, and each span is ended at
    most once: ending one that is already over does nothing.
    """

    def __init__(self, service: TTSService) -> None:
        """Track the replies of ``service``.

        Args:
            service: The service whose class name, voice and model the spans carry.
        """
        self._service = service
        self._enabled = False
        self._pipeline_context: Any = None
        self._open: dict[str, _Open] = {}

    @property
    def enabled(self) -> bool:
        """Whether spans are being produced."""
        return self._enabled

    def configure(self, setup: FrameProcessorSetup) -> None:
        """Turn tracing on if the pipeline asked for it and OpenTelemetry is present."""
        self._enabled = bool(setup.enable_tracing) and trace is not None
        self._pipeline_context = setup.tracing_context

    def open(self, context_id: str) -> None:
        """Start the span of reply ``context_id`` with the service's current voice and model."""
        if not self._enabled:
            return
        self.close(context_id)  # a context opened twice is two spans, never a leaked one
        settings = self._service.settings
        span = trace.get_tracer(TRACER_NAME).start_span("tts", context=self._parent())
        add_tts_span_attributes(
            span=span,
            service_name=type(self._service).__name__,
            model=str(getattr(settings, "model", None) or "unknown"),
            voice_id=str(getattr(settings, "voice", None) or "unknown"),
            settings=settings,
            operation_name="tts",
        )
        self._open[context_id] = _Open(span, time.monotonic())

    def add_text(self, context_id: str, text: str) -> None:
        """Record a fragment of the reply's text, as sent."""
        entry = self._open.get(context_id)
        if entry is None or not text:
            return
        entry.texts.append(text)
        # Fragments are joined by the server exactly as sent (they carry their spaces).
        whole = "".join(entry.texts)
        entry.span.set_attribute("text", whole)
        entry.span.set_attribute("metrics.character_count", len(whole))

    def audio_pushed(self, context_id: str) -> None:
        """The reply's audio left the service: its first audio sets ``metrics.ttfb``."""
        entry = self._open.get(context_id)
        if entry is None or entry.ttfb_recorded:
            return
        entry.ttfb_recorded = True
        entry.span.set_attribute("metrics.ttfb", time.monotonic() - entry.opened_at)

    def failed(self, context_id: str, error: ErrorFrame) -> None:
        """The reply failed with ``error``: its span ends with an error status."""
        entry = self._open.get(context_id)
        if entry is None:
            return
        entry.span.set_status(Status(StatusCode.ERROR, scrub(error.error)))
        if error.category is not None:
            entry.span.set_attribute("error.type", error.category.value)

    def close(self, context_id: str, *, interrupted: bool = False) -> None:
        """End the reply's span, if it is open."""
        entry = self._open.pop(context_id, None)
        if entry is None:
            return
        if interrupted:
            entry.span.set_attribute("tts.interrupted", True)
        entry.span.end()

    def close_all(self) -> None:
        """End every span still open (the pipeline stopped with replies unfinished)."""
        for context_id in list(self._open):
            self.close(context_id)

    def _parent(self) -> Context | None:
        """The turn's span, else the conversation's, else whatever is current."""
        tracing_context = self._pipeline_context
        if tracing_context is None:
            return None
        return tracing_context.get_turn_context() or tracing_context.get_conversation_context()


def reply_spans(service: TTSService) -> ReplySpans:
    """The :class:`ReplySpans` of ``service``, made on first use."""
    spans = service.__dict__.get("_waves_reply_spans")
    if spans is None:
        spans = service.__dict__["_waves_reply_spans"] = ReplySpans(service)
    return spans


def traced_replies(cls: S) -> S:
    """Give a ``TTSService`` subclass one ``tts`` span per reply (see the module docs).

    The class's own versions of the wrapped methods (or the ones it inherits)
    run unchanged; the span bookkeeping runs beside them, and a failure in it
    is logged, never raised into a reply. A class that inherits the wrapping
    is not wrapped again.

    Args:
        cls: The service class.

    Returns:
        The same class, its hooks wrapped.
    """
    if getattr(cls, "__waves_traced_replies__", False):
        return cls
    _wrap(cls, "setup", after=_configure)
    _wrap(cls, "create_audio_context", after=_open)
    _wrap(cls, "append_to_audio_context", after=_note_error)
    # Before the push, as Pipecat stops its TTFB clock before pushing.
    _wrap(cls, "push_frame", before=_note_audio)
    _wrap(cls, "on_audio_context_completed", after=_close)
    _wrap(cls, "on_audio_context_interrupted", after=_close_interrupted)
    _wrap(cls, "cleanup", after=_close_all)
    run_tts = cls.run_tts

    @functools.wraps(run_tts)
    async def traced_run_tts(
        self: TTSService, text: str, context_id: str
    ) -> AsyncGenerator[Frame | None, None]:
        _guarded(ReplySpans.add_text, reply_spans(self), context_id, text)
        async for frame in run_tts(self, text, context_id):
            yield frame

    cls.run_tts = traced_run_tts  # type: ignore[method-assign]
    cls.__waves_traced_replies__ = True  # type: ignore[attr-defined]
    return cls


def _wrap(
    cls: type,
    name: str,
    *,
    before: Callable[..., None] | None = None,
    after: Callable[..., None] | None = None,
) -> None:
    """Replace ``cls.name`` with a version that calls ``before``/``after`` around it.

    ``after`` runs even when the method raises (a failing hook must not leave
    a span open).
    """
    original = getattr(cls, name)

    @functools.wraps(original)
    async def wrapper(self: TTSService, *args: Any, **kwargs: Any) -> Any:
        spans = reply_spans(self)
        if before is not None:
            _guarded(before, spans, *args, **kwargs)
        try:
            return await original(self, *args, **kwargs)
        finally:
            if after is not None:
                _guarded(after, spans, *args, **kwargs)

    setattr(cls, name, wrapper)


def _guarded(action: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run span bookkeeping; a failure there is logged, never raised into a reply."""
    try:
        action(*args, **kwargs)
    except Exception as e:
        logger.opt(exception=e).warning(f"tracing a reply failed: {e}")


# The wrapped methods' arguments, after the ReplySpans; named as Pipecat names
# them, since Pipecat passes some by keyword.


def _configure(spans: ReplySpans, setup: FrameProcessorSetup) -> None:
    spans.configure(setup)


def _open(spans: ReplySpans, context_id: str) -> None:
    spans.open(context_id)


def _note_error(spans: ReplySpans, context_id: str | None, frame: Any) -> None:
    if context_id and isinstance(frame, ErrorFrame):
        spans.failed(context_id, frame)


def _note_audio(
    spans: ReplySpans, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
) -> None:
    if isinstance(frame, TTSAudioRawFrame) and frame.context_id:
        spans.audio_pushed(frame.context_id)


def _close(spans: ReplySpans, context_id: str) -> None:
    spans.close(context_id)


def _close_interrupted(spans: ReplySpans, context_id: str) -> None:
    spans.close(context_id, interrupted=True)


def _close_all(spans: ReplySpans) -> None:
    spans.close_all()
