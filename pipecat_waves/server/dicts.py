"""Pronunciation dictionaries of the local server: storage, validation, and use.

A dictionary is a list of word/pronunciation pairs owned by one API key. A
synthesis request that names dictionaries in ``pronunciation_dicts`` is spoken
with every listed word replaced by its pronunciation, written in plain words
("SQL" -> "sequel", "NYC" -> "New York City"), not IPA.

Choices of the local server where the documents are silent:

* A word is one run of non-space characters; it matches a word of the text
  exactly (case-sensitive), or the word's core once punctuation around it is
  set aside ("SQL." speaks as "sequel.").
* When several named dictionaries list a word, the first one named wins.
* Word timestamps keep naming the input: a replaced word gets one timestamp,
  carrying the word as written in the request and spanning the whole audio of
  its pronunciation, however many words that has. ``word`` stays the verbatim
  input substring the protocol promises, so a client matching timed words
  against the text it sent sees every word accounted for.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipecat_waves.server.backends import Synthesis, WordSpan, split_words

#: Limits of one dictionary and of one key's dictionaries (the service's are
#: undocumented; these keep a long-running local server's memory flat).
MAX_ITEMS = 500
MAX_WORD_CHARS = 100
MAX_PRONUNCIATION_CHARS = 200
MAX_DICTS_PER_KEY = 100
#: Most dictionaries one synthesis request may name.
MAX_DICTS_PER_REQUEST = 16

_WORD_RE = re.compile(r"\S+")
_CORE_RE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


class DictError(ValueError):
    """A dictionary request the server refuses.

    Attributes:
        status: The HTTP status to answer with (400 or 404).
        path: The JSON path at fault, e.g. ``["items", 2, "word"]``.
        message: What is wrong and what would be accepted.
    """

    def __init__(self, status: int, path: list[str | int], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.path = path
        self.message = message


@dataclass(frozen=True)
class DictItem:
    """One word and how to say it."""

    word: str
    pronunciation: str

    def to_json(self) -> dict[str, str]:
        """The item as the API shows it."""
        return {"word": self.word, "pronunciation": self.pronunciation}


@dataclass(frozen=True)
class PronunciationDict:
    """A stored dictionary."""

    id: str
    items: tuple[DictItem, ...]
    created_at: str

    def to_json(self) -> dict[str, Any]:
        """The dictionary as list and create answer it."""
        return {
            "id": self.id,
            "items": [item.to_json() for item in self.items],
            "createdAt": self.created_at,
        }


def parse_items(body: Any) -> tuple[DictItem, ...]:
    """Validate the ``items`` of a create or update body.

    Raises:
        DictError: Naming the first item and field at fault.
    """
    if not isinstance(body, dict):
        raise DictError(400, [], "Expected a JSON object")
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise DictError(400, ["items"], "'items' must be a non-empty array")
    if len(items) > MAX_ITEMS:
        raise DictError(400, ["items"], f"A dictionary holds at most {MAX_ITEMS} items")
    parsed: list[DictItem] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DictError(400, ["items", i], "Each item must be an object")
        extra = sorted(set(item) - {"word", "pronunciation"})
        if extra:
            raise DictError(400, ["items", i, extra[0]], f"Unknown field '{extra[0]}'")
        word = item.get("word")
        if not isinstance(word, str) or not word.strip():
            raise DictError(400, ["items", i, "word"], "'word' must be a non-empty string")
        word = word.strip()
        if _WORD_RE.fullmatch(word) is None:
            raise DictError(400, ["items", i, "word"], "'word' must be one word (no spaces)")
        if len(word) > MAX_WORD_CHARS:
            raise DictError(
                400, ["items", i, "word"], f"'word' must be at most {MAX_WORD_CHARS} characters"
            )
        if word in seen:
            raise DictError(400, ["items", i, "word"], f"'{word}' is listed twice")
        seen.add(word)
        said = item.get("pronunciation")
        if not isinstance(said, str) or not said.strip():
            raise DictError(
                400, ["items", i, "pronunciation"], "'pronunciation' must be a non-empty string"
            )
        said = " ".join(said.split())
        if len(said) > MAX_PRONUNCIATION_CHARS:
            raise DictError(
                400,
                ["items", i, "pronunciation"],
                f"'pronunciation' must be at most {MAX_PRONUNCIATION_CHARS} characters",
            )
        parsed.append(DictItem(word, said))
    return tuple(parsed)


def parse_dict_id(body: Any) -> str:
    """The ``id`` of an update or delete body.

    Raises:
        DictError: It is missing or not a dictionary id.
    """
    if not isinstance(body, dict):
        raise DictError(400, [], "Expected a JSON object")
    dict_id = body.get("id")
    if not isinstance(dict_id, str) or not dict_id:
        raise DictError(400, ["id"], "'id' is required")
    return dict_id


@dataclass
class DictStore:
    """Every key's dictionaries, in memory, in creation order."""

    _by_key: dict[str, dict[str, PronunciationDict]] = field(default_factory=dict)

    def list(self, key: str) -> list[PronunciationDict]:
        """The dictionaries ``key`` owns."""
        return list(self._by_key.get(key, {}).values())

    def create(self, key: str, items: tuple[DictItem, ...]) -> PronunciationDict:
        """Store a new dictionary for ``key``.

        Raises:
            DictError: ``key`` already owns :data:`MAX_DICTS_PER_KEY`.
        """
        owned = self._by_key.setdefault(key, {})
        if len(owned) >= MAX_DICTS_PER_KEY:
            raise DictError(
                400, [], f"At most {MAX_DICTS_PER_KEY} dictionaries per key; delete one first"
            )
        created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry = PronunciationDict(secrets.token_hex(12), items, created)
        owned[entry.id] = entry
        return entry

    def update(self, key: str, dict_id: str, items: tuple[DictItem, ...]) -> PronunciationDict:
        """Replace the items of one of ``key``'s dictionaries.

        Raises:
            DictError: ``key`` owns no dictionary ``dict_id`` (404).
        """
        old = self._get(key, dict_id)
        new = PronunciationDict(old.id, items, old.created_at)
        self._by_key[key][dict_id] = new
        return new

    def delete(self, key: str, dict_id: str) -> None:
        """Forget one of ``key``'s dictionaries.

        Raises:
            DictError: ``key`` owns no dictionary ``dict_id`` (404).
        """
        self._get(key, dict_id)
        del self._by_key[key][dict_id]

    def resolve(self, key: str, ids: tuple[str, ...]) -> tuple[PronunciationDict, ...]:
        """The dictionaries a request names, in the order named.

        Raises:
            DictError: One of them is not ``key``'s (404, naming it).
        """
        return tuple(self._get(key, dict_id) for dict_id in ids)

    def _get(self, key: str, dict_id: str) -> PronunciationDict:
        found = self._by_key.get(key, {}).get(dict_id)
        if found is None:
            # Another key's dictionary is as unknown as one never made.
            raise DictError(404, ["id"], f"Pronunciation dictionary '{_shown(dict_id)}' not found")
        return found


def _shown(value: str) -> str:
    return value if len(value) <= 40 else value[:40] + "…"


def parse_dict_ids(value: Any) -> tuple[str, ...] | None:
    """Validate a request's ``pronunciation_dicts``: a list of dictionary ids.

    Returns:
        The ids, or None when the field is absent (or null).

    Raises:
        DictError: It is not a list of strings, names too many, or repeats one.
    """
    if value is None:
        return None
    path: list[str | int] = ["pronunciation_dicts"]
    if not isinstance(value, list):
        raise DictError(400, path, "'pronunciation_dicts' must be an array of dictionary ids")
    if len(value) > MAX_DICTS_PER_REQUEST:
        raise DictError(
            400, path, f"'pronunciation_dicts' names at most {MAX_DICTS_PER_REQUEST} dictionaries"
        )
    for i, dict_id in enumerate(value):
        if not isinstance(dict_id, str) or not dict_id:
            raise DictError(400, [*path, i], "Each dictionary id must be a non-empty string")
    if len(set(value)) != len(value):
        raise DictError(400, path, "'pronunciation_dicts' names a dictionary twice")
    return tuple(value)


# ------------------------------------------------------------------ speaking


@dataclass(frozen=True)
class Rewrite:
    """Text as it is to be spoken, and how its words map back to the input.

    Attributes:
        spoken: The text with every listed word replaced.
        groups: For each input word, in order: the word as written and how
            many words of ``spoken`` say it.
    """

    spoken: str
    groups: tuple[tuple[str, int], ...]


def rewrite(text: str, dicts: tuple[PronunciationDict, ...]) -> Rewrite:
    """Replace every word the dictionaries list by its pronunciation.

    Args:
        text: The text of a request or segment, as sent.
        dicts: The dictionaries it names; the first to list a word wins.
    """
    table: dict[str, str] = {}
    for entry in dicts:
        for item in entry.items:
            table.setdefault(item.word, item.pronunciation)
    groups: list[tuple[str, int]] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        said = _say(token, table)
        groups.append((token, len(split_words(said))))
        return said

    spoken = _WORD_RE.sub(replace, text) if table else text
    if not table:
        groups = [(w, 1) for w, _ in split_words(text)]
    return Rewrite(spoken, tuple(groups))


def _say(token: str, table: dict[str, str]) -> str:
    said = table.get(token)
    if said is not None:
        return said
    match = _CORE_RE.match(token)
    if match is None:
        return token
    lead, core, trail = match.groups()
    said = table.get(core) if core else None
    return token if said is None else f"{lead}{said}{trail}"


def input_words(synthesis: Synthesis, rewritten: Rewrite) -> Synthesis:
    """``synthesis`` of ``rewritten.spoken``, its word spans named by the input's words.

    Each input word gets one span, from the start of the first word that says
    it to the end of the last. A synthesizer that timed a different number of
    words than the spoken text has gets its spans back unchanged.
    """
    spans = synthesis.words
    if not spans or sum(n for _, n in rewritten.groups) != len(spans):
        return synthesis
    merged: list[WordSpan] = []
    at = 0
    for word, n in rewritten.groups:
        if n == 0:
            continue
        merged.append(WordSpan(word, spans[at].start, spans[at + n - 1].end))
        at += n
    return Synthesis(pcm=synthesis.pcm, sample_rate=synthesis.sample_rate, words=tuple(merged))
