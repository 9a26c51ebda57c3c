"""Small pieces of the commands: key lookup, text splitting, voice list parsing."""

from __future__ import annotations

from pipecat_waves.cli.commands import api_key_from, split_text
from pipecat_waves.cli.voices import format_voices, parse_voices


def test_key_comes_from_the_flag_then_waves_then_smallest(monkeypatch):
    monkeypatch.setenv("SMALLEST_API_KEY", "s")
    monkeypatch.delenv("WAVES_API_KEY", raising=False)
    assert api_key_from(None) == "s"
    monkeypatch.setenv("WAVES_API_KEY", "w")
    assert api_key_from(None) == "w"
    assert api_key_from("flag") == "flag"
    monkeypatch.setenv("WAVES_API_KEY", "  ")
    assert api_key_from(None) == "s", "a blank variable counts as unset"


def test_long_text_is_cut_at_sentences_and_spaces_within_the_limit():
    long_sentence = " ".join(["word"] * 80) + "."
    pieces = split_text(f"Short one. {long_sentence} Last?  ", limit=100)
    assert pieces[0] == "Short one."
    assert pieces[-1] == "Last?"
    assert all(len(p) <= 100 for p in pieces)
    assert " ".join(pieces[1:-1]) == long_sentence


def test_voice_list_tolerates_missing_tags_and_skips_garbage():
    voices = parse_voices(
        {"voices": [{"voiceId": "x"}, "junk", {"voiceId": "y", "tags": {"language": ["hindi"]}}]}
    )
    assert [(v.voice_id, v.name, v.languages, v.gender) for v in voices] == [
        ("x", "x", "-", "-"),
        ("y", "y", "hindi", "-"),
    ]
    assert format_voices(voices).splitlines()[0].split() == [
        "id",
        "name",
        "language",
        "gender",
        "accent",
    ]
