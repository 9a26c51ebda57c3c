"""Pronunciation dictionaries on the local server: the endpoints, and speech that uses them.

Dictionaries are made over real HTTP on 127.0.0.1; speech is judged by what
the tone backend renders (a word's tone follows its text, so a replaced word
sounds different) and by the word timestamps.
"""

from __future__ import annotations

import base64
import json

import pytest

from pipecat_waves.protocol.constants import LIVE_PATH, PRONUNCIATION_DICTS_PATH, SYNC_PATH
from pipecat_waves.server import LocalWavesServer, ToneBackend
from pipecat_waves.server.dicts import MAX_ITEMS
from pipecat_waves.server.tones import transcribe_tones, words_of
from tests.server.conftest import AUTH, RATE, audio_of, is_complete, of_status, request, tone

ITEMS = [
    {"word": "SQL", "pronunciation": "sequel"},
    {"word": "NYC", "pronunciation": "New York City"},
]
TEXT = "I learned SQL in NYC."
SPOKEN = "I learned sequel in New York City."


async def create(server, http, items=ITEMS, headers=AUTH) -> dict:
    async with http.post(
        server.base_url + PRONUNCIATION_DICTS_PATH, json={"items": items}, headers=headers
    ) as r:
        assert r.status == 201, await r.text()
        return await r.json()


def heard(pcm: bytes, *texts: str) -> list[str]:
    vocabulary = [w for text in texts for w in words_of(text)]
    return transcribe_tones(pcm, RATE, vocabulary)


# ----------------------------------------------------------------- endpoints


async def test_round_trip_in_the_shapes_the_sdk_reads(server, http):
    url = server.base_url + PRONUNCIATION_DICTS_PATH
    made = await create(server, http)
    assert set(made) == {"id", "items", "createdAt"}
    assert made["items"] == ITEMS
    assert made["createdAt"].endswith("Z")

    async with http.get(url, headers=AUTH) as r:
        assert r.status == 200
        assert await r.json() == [made]

    new_items = [{"word": "SQL", "pronunciation": "ess queue ell"}]
    async with http.put(url, json={"id": made["id"], "items": new_items}, headers=AUTH) as r:
        assert r.status == 200
        assert await r.json() == {"id": made["id"], "items": new_items}
    async with http.get(url, headers=AUTH) as r:
        (listed,) = await r.json()
        assert listed["items"] == new_items and listed["createdAt"] == made["createdAt"]

    async with http.delete(url, json={"id": made["id"]}, headers=AUTH) as r:
        assert r.status == 200
        assert await r.json() == {"id": made["id"], "deleted": True}
    async with http.get(url, headers=AUTH) as r:
        assert await r.json() == []


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({}, ["items"], "non-empty array"),
        ({"items": []}, ["items"], "non-empty array"),
        ({"items": "SQL=sequel"}, ["items"], "non-empty array"),
        ({"items": [["SQL", "sequel"]]}, ["items", 0], "must be an object"),
        ({"items": [{"pronunciation": "x"}]}, ["items", 0, "word"], "non-empty string"),
        ({"items": [{"word": " ", "pronunciation": "x"}]}, ["items", 0, "word"], "non-empty"),
        ({"items": [{"word": "New York", "pronunciation": "x"}]}, ["items", 0, "word"], "one word"),
        ({"items": [{"word": "SQL"}]}, ["items", 0, "pronunciation"], "non-empty string"),
        ({"items": [{"word": "SQL", "pronunciation": 3}]}, ["items", 0, "pronunciation"], "string"),
        (
            {"items": [{"word": "SQL", "pronunciation": "a", "lang": "en"}]},
            ["items", 0, "lang"],
            "Unknown field",
        ),
        ({"items": [*ITEMS, ITEMS[0]]}, ["items", 2, "word"], "listed twice"),
        ({"items": ITEMS, "name": "x"}, ["name"], "Unknown field"),
        (
            {"items": [{"word": f"w{i}", "pronunciation": "x"} for i in range(MAX_ITEMS + 1)]},
            ["items"],
            f"at most {MAX_ITEMS}",
        ),
    ],
)
async def test_bad_dictionaries_get_400_naming_the_field(server, http, body, path, message):
    async with http.post(server.base_url + PRONUNCIATION_DICTS_PATH, json=body, headers=AUTH) as r:
        assert r.status == 400
        (error,) = (await r.json())["error"]
    assert error["path"] == path and message in error["message"]
    async with http.get(server.base_url + PRONUNCIATION_DICTS_PATH, headers=AUTH) as r:
        assert await r.json() == []


async def test_not_json_and_unknown_ids_are_refused(server, http):
    url = server.base_url + PRONUNCIATION_DICTS_PATH
    async with http.post(url, data=b"{nope", headers=AUTH) as r:
        assert r.status == 400 and "not valid JSON" in await r.text()
    async with http.put(url, json={"items": ITEMS}, headers=AUTH) as r:
        assert r.status == 400 and "'id' is required" in await r.text()
    for method in ("put", "delete"):
        body = {"id": "0123456789abcdef01234567"}
        if method == "put":
            body["items"] = ITEMS
        async with http.request(method, url, json=body, headers=AUTH) as r:
            assert r.status == 404
            assert "'0123456789abcdef01234567' not found" in await r.text()


@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
async def test_every_dictionary_endpoint_needs_the_key(server, http, method):
    async with http.request(
        method, server.base_url + PRONUNCIATION_DICTS_PATH, json={"items": ITEMS}
    ) as r:
        assert r.status == 401


async def test_dictionaries_belong_to_one_key():
    import aiohttp

    async with (
        LocalWavesServer(api_key=None, backend=ToneBackend()) as server,
        aiohttp.ClientSession() as http,
    ):
        alice = {"Authorization": "Bearer alice"}
        bob = {"Authorization": "Bearer bob"}
        made = await create(server, http, headers=alice)
        url = server.base_url + PRONUNCIATION_DICTS_PATH
        async with http.get(url, headers=bob) as r:
            assert await r.json() == []
        async with http.delete(url, json={"id": made["id"]}, headers=bob) as r:
            assert r.status == 404
        body = request(TEXT, pronunciation_dicts=[made["id"]])
        async with http.post(server.base_url + SYNC_PATH, json=body, headers=bob) as r:
            assert r.status == 400
        async with http.get(url, headers=alice) as r:
            assert [d["id"] for d in await r.json()] == [made["id"]]


# ------------------------------------------------------------------ HTTP speech


async def test_sync_speaks_the_pronunciations(server, http):
    made = await create(server, http)
    body = request(TEXT, pronunciation_dicts=[made["id"]])
    async with http.post(server.base_url + SYNC_PATH, json=body, headers=AUTH) as r:
        assert r.status == 200
        pcm = await r.read()
    assert pcm == tone(SPOKEN)
    assert heard(pcm, TEXT, SPOKEN) == words_of(SPOKEN)


async def test_sse_speaks_the_pronunciations(server, http):
    made = await create(server, http)
    body = request(TEXT, pronunciation_dicts=[made["id"]])
    pcm = b""
    async with http.post(server.base_url + LIVE_PATH, json=body, headers=AUTH) as r:
        assert r.status == 200
        async for line in r.content:
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
                pcm += base64.b64decode(data.get("audio", ""))
    assert heard(pcm, TEXT, SPOKEN) == words_of(SPOKEN)


async def test_first_named_dictionary_wins_and_no_dictionary_means_as_written(server, http):
    first = await create(server, http, items=[{"word": "SQL", "pronunciation": "sequel"}])
    second = await create(server, http, items=[{"word": "SQL", "pronunciation": "squeal"}])
    for ids, expected in (
        ([second["id"], first["id"]], "squeal"),
        ([first["id"], second["id"]], "sequel"),
        (None, "SQL"),
    ):
        body = request("SQL rocks", **({"pronunciation_dicts": ids} if ids else {}))
        async with http.post(server.base_url + SYNC_PATH, json=body, headers=AUTH) as r:
            pcm = await r.read()
        assert heard(pcm, "SQL squeal sequel rocks") == [expected, "rocks"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "array of dictionary ids"),
        ([1], "non-empty string"),
        (["a", "a"], "twice"),
        (["0123456789abcdef01234567"], "not found"),
    ],
)
async def test_synthesis_naming_bad_dictionaries_gets_400(server, http, value, message):
    body = request(TEXT, pronunciation_dicts=value)
    async with http.post(server.base_url + SYNC_PATH, json=body, headers=AUTH) as r:
        assert r.status == 400
        (error,) = (await r.json())["error"]
    assert error["path"] == ["pronunciation_dicts"] and message in error["message"]


# -------------------------------------------------------------- the live socket


async def test_socket_refuses_the_field_by_default(server, http, connect):
    made = await create(server, http)
    client = await connect(server)
    await client.send(request(TEXT, pronunciation_dicts=[made["id"]]))
    frame = await client.recv()
    assert frame["status"] == "error"
    assert "pronunciation_dicts" in frame["message"]
    # Refused, not spoken: the same socket still works.
    await client.send(request(TEXT))
    frames = await client.recv_until(is_complete)
    assert b"".join(audio_of(f) for f in of_status(frames, "chunk")) == tone(TEXT)


async def test_socket_can_ignore_the_field(make_server, http, connect):
    server = await make_server(pronunciation_dicts_on_socket="ignore")
    made = await create(server, http)
    client = await connect(server)
    await client.send(request(TEXT, pronunciation_dicts=[made["id"]]))
    frames = await client.recv_until(is_complete)
    assert b"".join(audio_of(f) for f in of_status(frames, "chunk")) == tone(TEXT)


async def test_socket_can_apply_the_field_with_words_timed_as_written(make_server, http, connect):
    server = await make_server(pronunciation_dicts_on_socket="apply")
    made = await create(server, http)
    client = await connect(server)
    await client.send(
        request(TEXT, pronunciation_dicts=[made["id"]], word_timestamps=True, context_id="c")
    )
    frames = await client.recv_until(is_complete)
    pcm = b"".join(audio_of(f) for f in of_status(frames, "chunk"))
    assert heard(pcm, TEXT, SPOKEN) == words_of(SPOKEN)
    words = [f["data"] for f in of_status(frames, "word_timestamp")]
    # One timestamp per word of the input, named as written.
    assert [w["word"] for w in words] == words_of(TEXT)
    # "NYC." spans the audio of all of "New York City.".
    spoken = ToneBackend().synthesize(SPOKEN, voice_id="avery", speed=1.0, sample_rate=RATE)
    new, city = spoken.words[4], spoken.words[6]
    assert words[4]["start"] == pytest.approx(new.start)
    assert words[4]["end"] == pytest.approx(city.end)
    assert words[4]["end"] == pytest.approx(len(pcm) / (2 * RATE) - 0.04, abs=1e-3)


async def test_socket_applying_refuses_an_unknown_dictionary(make_server, connect):
    server = await make_server(pronunciation_dicts_on_socket="apply")
    client = await connect(server)
    await client.send(request(TEXT, pronunciation_dicts=["0123456789abcdef01234567"]))
    frame = await client.recv()
    assert frame["status"] == "error" and "not found" in frame["message"]
