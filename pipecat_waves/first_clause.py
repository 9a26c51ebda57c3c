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
:class:`FirstClauseAggregator` applies it inside Pipecat's sentence aggregator.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from pipecat.utils.text.base_text_aggregator import Aggregation, TextType
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


class FirstClauseAggregator(SimpleTextAggregator):
    """Pipecat's sentence aggregator, with the first sentence of a turn sent in pieces.

    Args:
        rule: When to cut.
        clock: Seconds, monotonic (injectable for tests).
        **kwargs: Passed to ``SimpleTextAggregator``.
    """

    def __init__(
        self,
        rule: FirstClause,
        clock: Callable[[], float] = time.monotonic,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._rule = rule
        self._clock = clock
        self._first_sentence_done = False
        self._piece_started_at: float | None = None
        self._words_sent = 0

    async def aggregate(self, text: str) -> AsyncIterator[Aggregation]:
        """Yield sentences, and pieces of the turn's first sentence as they become speakable."""
        if self.aggregation_type == TextType.TOKEN:
            async for aggregation in super().aggregate(text):
                yield aggregation
            return
        for char in text:
            self._text += char
            sentence = await self._check_sentence_with_lookahead(char)
            if sentence is not None:
                self._first_sentence_done = True
                yield sentence
                continue
            piece = self._early_piece()
            if piece is not None:
                yield piece

    def _early_piece(self) -> Aggregation | None:
        if self._first_sentence_done or not self._text.strip():
            return None
        now = self._clock()
        if self._piece_started_at is None:
            self._piece_started_at = now
        if self._awaiting_sentence_check():
            return None  # "Dr. " or "I. ": the tokenizer has not decided yet
        if not early_cut(self._text, now - self._piece_started_at, self._rule, self._words_sent):
            return None
        piece, self._text = self._text.strip(), ""
        self._piece_started_at = None
        self._words_sent += len(piece.split())
        return Aggregation(text=piece, type=TextType.SENTENCE)

    def _awaiting_sentence_check(self) -> bool:
        # The base class tracks a pending sentence candidate in its lookahead
        # state; cutting in the middle of one could split an abbreviation.
        return self._lookahead_state.name != "IDLE"

    async def flush(self) -> Aggregation | None:
        """End of the turn: the rest, and the next turn starts afresh."""
        self._new_turn()
        return await super().flush()

    async def handle_interruption(self) -> None:
        """Barge-in: drop the buffer; the next turn starts afresh."""
        self._new_turn()
        await super().handle_interruption()

    async def reset(self) -> None:
        """Drop the buffer; the next turn starts afresh."""
        self._new_turn()
        await super().reset()

    def _new_turn(self) -> None:
        self._first_sentence_done = False
        self._piece_started_at = None
        self._words_sent = 0
