"""The first-clause rule and the aggregator that applies it (pure logic, fake clock)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pipecat.utils.text.base_text_aggregator import TextType

from pipecat_waves.service.first_clause import FirstClause, FirstClauseAggregator, early_cut

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick

RULE = FirstClause(min_clause_words=2, max_words=8, max_wait_s=0.4, min_budget_words=3)


@pytest.mark.parametrize(
    ("text", "waited_s", "cut"),
    [
        ("Hello there, ", 0.0, True),  # a clause of two words
        ("Hello there,", 0.0, False),  # the word may go on ("there,000"): wait for its end
        ("Sure, ", 0.0, False),  # one word is too short a clause
        ("Well - ", 0.0, False),  # the dash does not count as a word
        ("Well then - ", 0.0, True),
        ("Right \u2014 ", 0.0, False),
        ("All right\u2014 ", 0.0, True),
        ("First: ", 0.0, False),
        ("Two things; ", 0.0, True),
        ("It costs 1,000 dollars ", 0.0, False),  # a comma inside a number is no clause end
        ("one two three four five six seven ", 0.0, False),
        ("one two three four five six seven eight ", 0.0, True),  # the word budget
        ("one two ", 1.0, False),  # the time budget needs three words
        ("one two three ", 0.39, False),
        ("one two three ", 0.4, True),
        ("   ", 5.0, False),
        ("", 5.0, False),
    ],
)
def test_early_cut(text, waited_s, cut):
    assert early_cut(text, waited_s, RULE) is cut


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError):
        FirstClause(min_clause_words=0)
    with pytest.raises(ValueError):
        FirstClause(max_words=2, min_budget_words=3)
    with pytest.raises(ValueError):
        FirstClause(max_wait_s=0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def feed(aggregator, tokens, clock=None, per_token_s=0.03):
    pieces = []
    for token in tokens:
        if clock is not None:
            clock.now += per_token_s
        async for aggregation in aggregator.aggregate(token):
            pieces.append(aggregation.text)
    return pieces


def tokens_of(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


async def test_first_clause_goes_out_then_the_rest_by_sentences():
    clock = Clock()
    agg = FirstClauseAggregator(RULE, clock=clock, aggregation_type=TextType.SENTENCE)
    text = "Hello there, thanks for calling the support line. How can I help you today? Bye."
    pieces = await feed(agg, tokens_of(text), clock)
    rest = await agg.flush()
    assert pieces == [
        "Hello there,",
        "thanks for calling the support line.",
        "How can I help you today?",
    ]
    assert rest is not None and rest.text == "Bye."


async def test_a_long_first_sentence_keeps_coming_in_pieces():
    clock = Clock()
    agg = FirstClauseAggregator(RULE, clock=clock, aggregation_type=TextType.SENTENCE)
    text = (
        "Well, I can certainly help you find a table for four people at a quiet place "
        "near the river tonight. Anything else?"
    )
    pieces = await feed(agg, tokens_of(text), clock, per_token_s=0.06)
    # "Well," is too short; the budgets then send runs of words until the sentence ends.
    assert pieces[0] == "Well, I can certainly help you find a"
    assert " ".join(pieces) == (
        "Well, I can certainly help you find a table for four people at a quiet place "
        "near the river tonight."
    )
    assert all(len(p.split()) >= RULE.min_budget_words for p in pieces)


async def test_every_turn_starts_afresh_and_barge_in_drops_the_buffer():
    clock = Clock()
    agg = FirstClauseAggregator(RULE, clock=clock, aggregation_type=TextType.SENTENCE)
    # Only the first sentence is cut; the last waits for what follows it (or the flush).
    assert await feed(agg, tokens_of("Hi there, friend. Next one, here. "), clock) == [
        "Hi there,",
        "friend.",
    ]
    rest = await agg.flush()
    assert rest is not None and rest.text == "Next one, here."
    assert await feed(agg, tokens_of("Second turn, also early. "), clock) == ["Second turn,"]
    await feed(agg, tokens_of("Cut off mid"), clock)
    await agg.handle_interruption()
    assert agg.text.text == ""
    assert await feed(agg, tokens_of("Fresh start, again. "), clock) == ["Fresh start,"]


async def test_an_abbreviation_is_never_cut():
    clock = Clock()
    agg = FirstClauseAggregator(RULE, clock=clock, aggregation_type=TextType.SENTENCE)
    pieces = await feed(agg, tokens_of("Dr. Smith will see you now. "), clock, per_token_s=0.2)
    assert all(not p.endswith("Dr.") for p in pieces)
    assert " ".join(pieces) + (f" {agg.text.text}" if agg.text.text else "") == (
        "Dr. Smith will see you now."
    )


async def test_token_mode_passes_tokens_through():
    agg = FirstClauseAggregator(RULE, aggregation_type=TextType.TOKEN)
    assert await feed(agg, ["Hello ", "there, ", "you."]) == ["Hello ", "there, ", "you."]


words = st.sampled_from(["yes", "table,", "for", "two;", "tonight.", "at", "eight?", "-", "a"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(words, min_size=1, max_size=40),
    st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=10),
    st.floats(min_value=0.0, max_value=0.3),
)
async def test_pieces_give_back_every_word_once_in_order(word_list, cuts, per_token_s):
    text = " ".join(word_list)
    # Tokens of random lengths, as an LLM streams them.
    tokens, i, k = [], 0, 0
    while i < len(text):
        n = cuts[k % len(cuts)]
        tokens.append(text[i : i + n])
        i, k = i + n, k + 1
    clock = Clock()
    agg = FirstClauseAggregator(RULE, clock=clock, aggregation_type=TextType.SENTENCE)
    pieces = await feed(agg, tokens, clock, per_token_s)
    rest = await agg.flush()
    if rest is not None and rest.text:
        pieces.append(rest.text)
    assert " ".join(pieces).split() == text.split()
