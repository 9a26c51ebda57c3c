"""Where text may be cut: sentence ends and word boundaries, one rule each.

The local server (releasing segments), the client session (keeping fragments
under the documented size) and the command line (one request per sentence)
all cut text by these rules, so they agree on what a sentence is.
"""

from __future__ import annotations

import re

#: Characters that end a sentence (ASCII, ellipsis, CJK full-width).
SENTENCE_END_CHARS = ".!?\u2026\u3002\uff01\uff1f"
#: Closing quotes and brackets that may follow a sentence end.
_CLOSERS = "\"'\u201d\u2019)\\]"

_ENDS_SENTENCE = re.compile(rf"[{SENTENCE_END_CHARS}][{_CLOSERS}]*\s*\Z")
_SENTENCE_BREAK = re.compile(rf"(?<=[{SENTENCE_END_CHARS}])[{_CLOSERS}]*\s+")


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends a sentence (trailing quotes and spaces allowed)."""
    return _ENDS_SENTENCE.search(text) is not None


def split_sentences(text: str) -> list[str]:
    """Cut ``text`` after each sentence end; pieces are stripped, empty ones dropped."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_BREAK.finditer(text):
        end = match.start() + len(match.group().rstrip())
        pieces.append(text[start:end])
        start = match.end()
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def word_cut(text: str, limit: int) -> int:
    """Length of the longest prefix of ``text`` within ``limit`` that ends after a space.

    The prefix keeps its trailing whitespace, so the rest starts with the next
    word and the two joined give back ``text``. A word longer than ``limit``
    is cut at ``limit``.
    """
    if len(text) <= limit:
        return len(text)
    for i in range(limit, 0, -1):
        if text[i - 1].isspace():
            return i
    return limit


def split_at_words(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters at word boundaries.

    Joined, the pieces give back ``text`` exactly.
    """
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = word_cut(rest, limit)
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest or not pieces:
        pieces.append(rest)
    return pieces
