"""The first clause of a turn goes out while the LLM is still writing the sentence."""

from __future__ import annotations

from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.aggregators.llm_text_processor import LLMTextProcessor
from pipecat.services.tts_service import TextAggregationMode
from pipecat.tests.utils import run_test

from pipecat_waves import WavesTTSService
from pipecat_waves.service.first_clause import FirstClause, FirstClauseAggregator
from tests.service.helpers import API_KEY, heard, llm_turn, make_service, run
from tests.service.test_streaming import carried, tone_server

URL = "ws://127.0.0.1:9"  # never connected to: construction only
REPLY = "Hello there, thanks for calling the support line. How can I help you today?"


def test_the_service_cuts_with_the_first_clause_aggregator():
    # Pipecat offers no public way to give a service its aggregator: if the
    # member it lives in moves, this (and test_pipecat_adapter.py) fails
    # instead of the feature silently going away.
    service = WavesTTSService(api_key=API_KEY, base_url=URL)
    assert isinstance(service._text_aggregator, FirstClauseAggregator)
    plain = WavesTTSService(api_key=API_KEY, base_url=URL, first_clause=None)
    assert not isinstance(plain._text_aggregator, FirstClauseAggregator)
    tokens = WavesTTSService(
        api_key=API_KEY, base_url=URL, text_aggregation_mode=TextAggregationMode.TOKEN
    )
    assert not isinstance(tokens._text_aggregator, FirstClauseAggregator)


async def test_first_clause_is_sent_before_the_sentence_is_written_and_every_word_spoken():
    async with tone_server() as server:
        service = make_service(server)
        down, _ = await run(service, llm_turn(REPLY, token_gap_s=0.03))
    sent = [m["text"] for m in carried(server)]
    assert sent == [
        "Hello there, ",
        "thanks for calling the support line. ",
        "How can I help you today? ",
        "",
    ]
    assert len({m["context_id"] for m in carried(server)}) == 1, "one context: the server joins"
    # Sentences go out unbuffered, so the clause is synthesized on its own, at once.
    assert server.segments[0].text == "Hello there, "
    assert heard(down, REPLY) == REPLY.split()


async def test_it_can_be_turned_off():
    async with tone_server() as server:
        service = make_service(server, first_clause=None)
        down, _ = await run(service, llm_turn(REPLY, token_gap_s=0.01))
    first = carried(server)[0]["text"]
    assert first == "Hello there, thanks for calling the support line. "
    assert heard(down, REPLY) == REPLY.split()


async def test_thresholds_are_settings():
    rule = FirstClause(min_clause_words=3)
    async with tone_server() as server:
        service = make_service(server, first_clause=rule)
        await run(service, llm_turn(REPLY, token_gap_s=0.01))
    # "Hello there," is two words: too short for this rule; the word budget cuts instead.
    first = carried(server)[0]["text"]
    assert first == "Hello there, thanks for calling the support line. "


async def test_pipecats_public_route_cuts_the_same_pieces():
    # Without touching the service's aggregator: Pipecat's own text processor
    # with ours, ahead of a service that cuts nothing itself.
    async with tone_server() as server:
        pipeline = Pipeline(
            [
                LLMTextProcessor(text_aggregator=FirstClauseAggregator(FirstClause())),
                make_service(server, first_clause=None),
            ]
        )
        down, _ = await run_test(pipeline, frames_to_send=llm_turn(REPLY, token_gap_s=0.03))
    assert [m["text"] for m in carried(server)] == [
        "Hello there, ",
        "thanks for calling the support line. ",
        "How can I help you today? ",
        "",
    ]
    assert heard(list(down), REPLY) == REPLY.split()


def test_the_thresholds_are_importable_from_the_package_root():
    import pipecat_waves

    assert "FirstClause" in pipecat_waves.__all__
    assert pipecat_waves.FirstClause is FirstClause
    assert WavesTTSService(api_key=API_KEY, base_url=URL, first_clause=pipecat_waves.FirstClause())
