"""Speak the first clause of a turn while the LLM is still writing its sentence.

The longest silence a caller hears is the one before the bot's first word, and
most of it is spent waiting for the LLM to finish the first sentence, not on
synthesis. So the first sentence of each turn is sent in pieces: a clause as
soon as it is complete (a comma, semicolon, colon or dash after a few words),
or a run of words once a word or time budget is spent. Every later sentence is
sent whole, as before. All pieces go to the same continuation context, so the
server joins them; the seam costs prosody only where a piece is cut.

Pieces keep coming until the first sentence ends. After the first piece the
time budget is what the words already sent take to speak, less a margin for
the server's first byte: the next piece goes out before the audio ahead of it
runs out, so the seam has no gap.

:func:`early_cut` is the rule (pure, no clock of its own);
:class:`FirstClauseAggregator` applies it on top of Pipecat's sentence aggregator.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum, auto

from pipecat.utils.string import SENTENCE_ENDING_PUNCTUATION
from pipecat.utils.text.base_text_aggregator import Aggregation, BaseTextAggregator, TextType
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator

__all__ = ["FirstClause", "FirstClauseAggregator", "early_cut"]

#: Marks that end a clause when a word ends with them.
CLAUSE_MARKS = (",", ";", ":", "\u2014", "\u2013")
#: Words that are a dash on their own ("well - maybe").
DASH_WORDS = frozenset({"-", "--", "\u2014", "\u2013"})


@dataclass(frozen=True)
class FirstClause:
    """When the first sentence of a turn is cut into earlier pieces.

    Parameters:
        min_clause_words: Fewest words before a clause mark that make a piece
            ("Hello there," is two). Shorter clauses ("Sure,") wait for more.
        max_words: Word budget: a piece this long is sent at the next word end
            even without a clause mark.
        max_wait_s: Time budget from the piece's first text: once spent, the
            words so far go at the next word end (if there are ``min_budget_words``).
        min_budget_words: Fewest words the time budget sends on their own.
        seconds_per_word: Rough speaking time of a word, to tell how long the
            words already sent will play.
        first_byte_margin_s: How long before that audio runs out the next
            piece must be sent (the server's first byte, and some slack).
    """

    min_clause_words: int = 1
    max_words: int = 8
    max_wait_s: float = 0.4
    min_budget_words: int = 3
    seconds_per_word: float = 0.3
    first_byte_margin_s: float = 0.25

    def time_budget_s(self, words_sent: int) -> float:
        """Time budget of the next piece, once ``words_sent`` words have gone out."""
        if words_sent == 0:
            return self.max_wait_s
        ahead = words_sent * self.seconds_per_word - self.first_byte_margin_s
        return max(0.05, min(self.max_wait_s, ahead))

    def __post_init__(self) -> None:
        if self.min_clause_words < 1 or self.min_budget_words < 1:
            raise ValueError("FirstClause word counts must be at least 1")
        if self.max_words < max(self.min_clause_words, self.min_budget_words):
            raise ValueError("FirstClause.max_words must be at least the other word counts")
        if self.max_wait_s <= 0:
            raise ValueError("FirstClause.max_wait_s must be positive")


def early_cut(text: str, waited_s: float, rule: FirstClause, words_sent: int = 0) -> bool:
    """Whether ``text`` (the unsent rest of the first sentence) goes out now.

    Only ever at a word end (``text`` ends with whitespace), so no word is cut.

    Args:
        text: Buffered text, as the LLM wrote it.
        waited_s: Seconds since its first character arrived.
        rule: The thresholds.
        words_sent: Words of this sentence already sent in earlier pieces.
    """
    if not text or not text[-1].isspace():
        return False
    words = text.split()
    if not words:
        return False
    last = words[-1]
    clause_end = last in DASH_WORDS or last.endswith(CLAUSE_MARKS)
    n = len(words) - (1 if last in DASH_WORDS else 0)
    if clause_end and n >= rule.min_clause_words:
        return True
    if n >= rule.max_words:
        return True
    return waited_s >= rule.time_budget_s(words_sent) and n >= rule.min_budget_words


class FirstClauseAggregator(BaseTextAggregator):
    """Sentences, as Pipecat's own aggregator makes them, with the turn's first cut into pieces.

    Built on Pipecat's public aggregator interface: it wraps a
    ``SimpleTextAggregator`` for the sentences and uses only its public
    methods, so it works with any Pipecat that has them. Use it wherever
    Pipecat takes a text aggregator, for instance
    ``LLMTextProcessor(text_aggregator=FirstClauseAggregator(FirstClause()))``.

    Args:
        rule: When to cut.
        clock: Seconds, monotonic (injectable for tests).
        aggregation_type: ``TextType.SENTENCE`` to cut; ``TextType.TOKEN``
            passes tokens through untouched.
        language: Language of the sentence tokenizer.
    """

    def __init__(
        self,
        rule: FirstClause,
        clock: Callable[[], float] = time.monotonic,
        *,
        aggregation_type: TextType = TextType.SENTENCE,
        language: str | None = None,
    ) -> None:
        super().__init__(aggregation_type=aggregation_type, language=language)
        self._sentences = SimpleTextAggregator(aggregation_type=aggregation_type, language=language)
        self._rule = rule
        self._clock = clock
        self._first_sentence_done = False
        self._piece_started_at: float | None = None
        self._words_sent = 0
        self._ends_at_space = False
        self._mark = _Mark.NONE

    @property
    def text(self) -> Aggregation:
        """The text buffered so far."""
        return self._sentences.text

    def set_language(self, language: str | None) -> None:
        """Select the sentence tokenizer's language, keeping what is buffered."""
        super().set_language(language)
        self._sentences.set_language(language)

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        """Yield sentences, and pieces of the turn's first sentence as they become speakable."""
        if self.aggregation_type == TextType.TOKEN or self._first_sentence_done:
            async for aggregation in self._sentences.aggregate(text):
                yield aggregation
            return
        for i, char in enumerate(text):
            sentence_ended = False
            async for sentence in self._sentences.aggregate(char):
                sentence_ended = True
                yield sentence
            if sentence_ended:
                # The rest of the turn goes by whole sentences.
                self._first_sentence_done = True
                async for aggregation in self._sentences.aggregate(text[i + 1 :]):
                    yield aggregation
                return
            self._follow(char)
            piece = await self._early_piece()
            if piece is not None:
                yield piece

    def _follow(self, char: str) -> None:
        """Keep track of word ends and of a sentence mark still waiting on its next word."""
        self._ends_at_space = char.isspace()
        if char in SENTENCE_ENDING_PUNCTUATION:
            # "Dr. " or "I. ": whether that was a sentence end is known only
            # once the word after it is complete.
            self._mark = _Mark.BEFORE_WORD
        elif self._mark is _Mark.BEFORE_WORD and char.isalnum():
            self._mark = _Mark.IN_WORD
        elif self._mark is _Mark.IN_WORD and char.isspace():
            self._mark = _Mark.NONE

    async def _early_piece(self) -> Aggregation | None:
        buffered = self._sentences.text.text
        if not buffered.strip():
            return None
        now = self._clock()
        if self._piece_started_at is None:
            self._piece_started_at = now
        if self._mark is not _Mark.NONE:
            return None  # cutting now could split "Dr. Smith" before the tokenizer decides
        # The buffer comes back without its trailing spaces: put the word end back.
        candidate = buffered + " " if self._ends_at_space else buffered
        if not early_cut(candidate, now - self._piece_started_at, self._rule, self._words_sent):
            return None
        piece = buffered.strip()
        await self._sentences.reset()
        self._piece_started_at = None
        self._words_sent += len(piece.split())
        return Aggregation(text=piece, type=TextType.SENTENCE)

    async def flush(self) -> Aggregation | None:
        """End of the turn: the rest, and the next turn starts afresh."""
        self._new_turn()
        return await self._sentences.flush()

    async def handle_interruption(self) -> None:
        """Barge-in: drop the buffer; the next turn starts afresh."""
        self._new_turn()
        await self._sentences.handle_interruption()

    async def reset(self) -> None:
        """Drop the buffer; the next turn starts afresh."""
        self._new_turn()
        await self._sentences.reset()

    def _new_turn(self) -> None:
        self._first_sentence_done = False
        self._piece_started_at = None
        self._words_sent = 0
        self._ends_at_space = False
        self._mark = _Mark.NONE


class _Mark(Enum):
    """Where the text stands after the last sentence-ending mark."""

    NONE = auto()  # no mark waiting
    BEFORE_WORD = auto()  # a mark, and no word after it yet
    IN_WORD = auto()  # in the word after a mark
