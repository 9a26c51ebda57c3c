"""One reply's progress: what was sent, what came back, and when it is over.

A *reply* is one utterance as Pipecat sees it (an LLM turn or a
``TTSSpeakFrame``). Its text goes to the server as fragments of a continuation
context; the server cuts that text into *segments* by rules of its own (a
sentence may be split, several merged, half a sentence released when the text
stream pauses) and answers each segment with audio, word timestamps and one
``complete``, which may come late, be merged with the next one, or never come.

So nothing here counts segments or completes against what was sent. A reply
is over when what was sent has demonstrably been spoken:

* **Word timestamps** name verbatim words of the input. Each one is matched
  against the reply's text by position; once every word sent is matched, and
  the audio of the last one has arrived, the reply is over (at once if its
  segment has completed, else after a short quiet tail for trailing silence).
* **Without timestamps** nothing maps audio to text, so the reply is taken as
  over once no audio has come for a guard longer than any gap this session
  has seen between a request and its audio or between two segments. A
  ``complete`` proves nothing about segments still to come, and may be late
  or missing, so it neither ends the reply nor holds it back.

A reply that has sent text but received nothing is never given up by a clock:
it may be queued behind others on the server. It ends on evidence: its audio,
an error, or a dead connection (see :mod:`pipecat_waves.protocol.session`).

Word timestamps are relative either to the start of their segment's audio (the
documented reading) or to the start of the whole context's audio; which one a
server uses is read off the data, segment by segment (see
:meth:`Attempt.word_time_base`), so word frames stay in step with the audio
whatever the completes do.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from pipecat_waves.protocol.audio import PcmAligner
from pipecat_waves.protocol.constants import BYTES_PER_SAMPLE

#: Once a context has this much audio before a segment, that segment's first
#: word tells the two readings of word times apart clearly enough to hold for
#: the rest of the context; before that each segment is judged on its own.
_MIN_OFFSET_TO_TELL_S = 0.2

_WORD_CHAR = re.compile(r"\w")


def has_words(text: str) -> bool:
    """Whether ``text`` holds anything a voice would speak (a letter or digit)."""
    return _WORD_CHAR.search(text) is not None


class ReplyState(enum.Enum):
    """Where a reply is in its life."""

    WRITING = "writing"  # the LLM may still add text
    CLOSING = "closing"  # all text is known; waiting for the rest of its audio
    FINISHED = "finished"  # everything sent has been spoken (or given up on, see reply docs)
    FAILED = "failed"  # the server refused it; reported once
    CANCELLED = "cancelled"  # barge-in: none of its audio may come out again

    @property
    def ended(self) -> bool:
        """Whether nothing more of this reply is expected or wanted."""
        return self in (ReplyState.FINISHED, ReplyState.FAILED, ReplyState.CANCELLED)


@dataclass
class Segment:
    """One segment the server released, as seen from its frames.

    Attributes:
        key: The server's ``request_id`` (or a stand-in when it names none).
        start_s: Seconds of the reply's audio received before this segment.
        attempt_offset_s: Seconds of the attempt's audio before this segment.
    """

    key: str
    start_s: float
    attempt_offset_s: float
    aligner: PcmAligner = field(default_factory=PcmAligner)
    audio_bytes: int = 0
    completed: bool = False
    time_base_s: float | None = None  # added to its word times: reply-level seconds
    last_chunk_at: float | None = None


@dataclass
class Attempt:
    """One try at speaking the rest of a reply: one server context (``wire_id``).

    A reply starts with one attempt; it moves to a new one when its connection
    drops or the server refuses it for the concurrency limit, resuming from
    the first word not yet proven spoken.

    Attributes:
        wire_id: The ``context_id`` (and ``request_id``) the server sees.
        text_start: Where in the reply's text this attempt's text begins.
        audio_start_s: Seconds of the reply's audio received before it.
    """

    wire_id: str
    text_start: int
    audio_start_s: float
    segments: list[Segment] = field(default_factory=list)
    sent_upto: int = 0  # reply-text position up to which fragments were sent
    close_sent_at: float | None = None
    last_sent_at: float | None = None
    words_seen: int = 0
    context_relative: bool | None = None  # reading of word times, once told

    def word_time_base(self, segment: Segment, start_s: float) -> float:
        """Reply-level seconds to add to the word times of ``segment``.

        Decided on the segment's first word. Later segments tell the readings
        apart: segment-relative times restart near zero, while times relative
        to the context run on from the audio before the segment.
        """
        if segment.time_base_s is not None:
            return segment.time_base_s
        offset = segment.attempt_offset_s
        # The reading whose prediction lies nearer wins: a segment-relative
        # first word starts near 0, a context-relative one near ``offset``.
        nearer_context = offset > 0 and start_s >= offset / 2
        if self.context_relative is None and offset >= _MIN_OFFSET_TO_TELL_S:
            self.context_relative = nearer_context  # clear enough to hold for the context
        context_relative = self.context_relative
        if context_relative is None:
            context_relative = nearer_context
        if context_relative:
            segment.time_base_s = self.audio_start_s
        else:
            segment.time_base_s = segment.start_s
        return segment.time_base_s


@dataclass
class SpokenWord:
    """A word matched against the reply's text."""

    text_end: int  # reply-text position just after the word
    end_s: float  # reply-level time at which its audio ends


class Reply:
    """Progress of one reply; pure bookkeeping, no I/O and no clock of its own.

    Args:
        reply_id: Pipecat's context id.
        sample_rate: Rate of the audio, to turn bytes into seconds.
    """

    def __init__(self, reply_id: str, sample_rate: int) -> None:
        self.id = reply_id
        self.sample_rate = sample_rate
        self.state = ReplyState.WRITING
        self.text = ""  # everything the LLM gave for this reply, as given
        self.attempts: list[Attempt] = []
        self.audio_s = 0.0  # audio received, reply-level seconds
        self.last_frame_at: float | None = None  # any frame, complete included
        self.last_audio_at: float | None = None  # last chunk or timed word
        # Longest wait between two chunks of one segment: how long the server
        # may pause mid-stream, so how long trailing audio may still take.
        self.max_chunk_gap_s = 0.0
        self.matched_upto = 0  # reply-text position after the last matched word
        self.words: list[SpokenWord] = []

    # ---------------------------------------------------------------- text

    @property
    def attempt(self) -> Attempt | None:
        """The current attempt, if the reply has started one."""
        return self.attempts[-1] if self.attempts else None

    def add_text(self, text: str) -> None:
        """Append the LLM's next fragment."""
        self.text += text

    def unsent(self) -> str:
        """Text of the current attempt not sent yet."""
        attempt = self.attempt
        start = attempt.sent_upto if attempt else 0
        return self.text[start:]

    def start_attempt(self, wire_id: str, resume_at: int | None = None) -> Attempt:
        """Begin a new server context.

        Args:
            wire_id: Its ``context_id``.
            resume_at: Where in the text it starts; by default at the first
                word not proven spoken.
        """
        resume = self.spoken_upto() if resume_at is None else resume_at
        # Skip the space after the last spoken word: the new context starts clean.
        while resume < len(self.text) and self.text[resume].isspace():
            resume += 1
        attempt = Attempt(wire_id, text_start=resume, audio_start_s=self.audio_s)
        attempt.sent_upto = resume
        self.attempts.append(attempt)
        # Words matched but not yet heard will be matched again in the new context.
        self.words = [w for w in self.words if w.text_end <= resume]
        self.matched_upto = resume
        return attempt

    def spoken_upto(self) -> int:
        """Reply-text position up to which every word's audio has been received.

        Only a word whose audio has fully arrived counts: a server may send
        timestamps ahead of the audio they describe.
        """
        done = self.attempt.text_start if self.attempt else 0
        for word in self.words:
            if word.end_s <= self.audio_s + 1e-3:
                done = max(done, word.text_end)
        return done

    # --------------------------------------------------------------- frames

    def has_segment(self, key: str) -> bool:
        """Whether any attempt of this reply has had a segment named ``key``."""
        return any(s.key == key for a in self.attempts for s in a.segments)

    def find_segment(self, key: str) -> Segment | None:
        """The current attempt's segment named ``key``, if it has sent a frame."""
        attempt = self.attempt
        if attempt is None:
            return None
        return next((s for s in reversed(attempt.segments) if s.key == key), None)

    def new_segment(self, key: str) -> Segment:
        """Start tracking a segment on its first frame."""
        attempt = self.attempt
        assert attempt is not None, "frames for a reply that sent nothing"
        segment = Segment(
            key,
            start_s=self.audio_s,
            attempt_offset_s=self.audio_s - attempt.audio_start_s,
        )
        attempt.segments.append(segment)
        return segment

    def add_audio(self, segment: Segment, audio: bytes, now: float) -> bytes:
        """Account for a chunk of ``segment``; returns its whole samples."""
        self.last_frame_at = self.last_audio_at = now
        if segment.last_chunk_at is not None:
            self.max_chunk_gap_s = max(self.max_chunk_gap_s, now - segment.last_chunk_at)
        segment.last_chunk_at = now
        pcm = segment.aligner.feed(audio)
        segment.audio_bytes += len(audio)
        self.audio_s += len(audio) / (BYTES_PER_SAMPLE * self.sample_rate)
        return pcm

    def add_word(
        self, segment: Segment, word: str, start_s: float, end_s: float | None, now: float
    ) -> float:
        """Match a timed word against the text; returns its reply-level start time."""
        self.last_frame_at = self.last_audio_at = now
        attempt = self.attempt
        assert attempt is not None
        attempt.words_seen += 1
        base = attempt.word_time_base(segment, start_s)
        at = self.text.find(word, self.matched_upto, attempt.sent_upto) if word else -1
        if at >= 0:
            self.matched_upto = at + len(word)
            end = base + (end_s if end_s is not None else start_s)
            self.words.append(SpokenWord(self.matched_upto, end))
        return base + start_s

    def complete(self, segment: Segment, now: float) -> None:
        """The server says ``segment`` has sent all its audio."""
        self.last_frame_at = now
        segment.completed = True
        # An odd trailing byte at a segment's end is not a sample.
        segment.aligner.reset()

    # ------------------------------------------------------------ progress

    def all_words_matched(self) -> bool:
        """Whether every word sent has been matched by a timestamp."""
        attempt = self.attempt
        if attempt is None:
            return False
        return not has_words(self.text[self.matched_upto : attempt.sent_upto])

    def quiet_since(self) -> float | None:
        """Since when the reply has had no audio or word (or since its close went out)."""
        attempt = self.attempt
        if attempt is None or attempt.close_sent_at is None:
            return None
        return max(self.last_audio_at or 0.0, attempt.close_sent_at)

    def last_segment_completed(self) -> bool:
        """Whether the server has sent ``complete`` for the latest segment heard."""
        attempt = self.attempt
        return bool(attempt and attempt.segments and attempt.segments[-1].completed)

    def words_prove_spoken(self) -> bool:
        """Whether word timestamps account for every word sent."""
        attempt = self.attempt
        return bool(attempt and attempt.words_seen and self.all_words_matched())

    def quiet_needed(
        self,
        tail_guard_s: float,
        gap_guard_s: float,
        *,
        expect_words: bool = False,
        min_tail_guard_s: float = 0.0,
    ) -> float | None:
        """Seconds of quiet after which the current attempt is over; None: not on a clock.

        Only an attempt whose close has gone out can be over.

        Args:
            tail_guard_s: Most quiet that lets trailing silence in after the
                last word. Once the server's chunk cadence is known, twice its
                longest pause between chunks is enough (but never less than
                ``min_tail_guard_s``): a ``complete`` held back (4 s by the
                documented default) must not hold the next reply back.
            gap_guard_s: Quiet that proves no further segment is coming, when
                nothing maps audio to text.
            expect_words: The server has timed words for this voice before, so
                a reply without them is not over just because it went quiet.
        """
        attempt = self.attempt
        if self.state.ended or attempt is None or attempt.close_sent_at is None:
            return None
        if not has_words(self.text[attempt.text_start :]):
            return gap_guard_s  # nothing to speak: the server may send nothing at all
        segments = attempt.segments
        if attempt.words_seen and self.all_words_matched():
            last = segments[-1] if segments else None
            heard = self.spoken_upto() >= self.matched_upto
            if heard and last is not None and last.completed:
                return 0.0
            if heard and self.max_chunk_gap_s > 0:
                return min(tail_guard_s, max(min_tail_guard_s, 2 * self.max_chunk_gap_s))
            return tail_guard_s  # times ran ahead of the audio, or the cadence is unknown
        if not segments:
            return None  # queued or slow on the server: wait for evidence
        if attempt.words_seen or expect_words:
            # Timed words stopped short of the text (a word the server spelled
            # differently, say): give further segments every chance first.
            return 2 * gap_guard_s
        return gap_guard_s

    def missing_words(self) -> str:
        """Sent text no timestamp accounted for (for logs)."""
        attempt = self.attempt
        end = attempt.sent_upto if attempt else len(self.text)
        return self.text[self.matched_upto : end].strip()
