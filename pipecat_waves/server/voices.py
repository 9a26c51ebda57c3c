"""The local server's voice catalogue.

Voice ids and tags follow the public catalogue's shape. The local backends
speak every voice the same way; the catalogue exists so clients can list
voices and so unknown ids are refused as the real service refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Voice:
    """One catalogue entry."""

    voice_id: str
    display_name: str
    languages: tuple[str, ...]
    accent: str
    gender: str
    age: str
    usecases: tuple[str, ...] = ("conversational",)

    def to_json(self) -> dict[str, Any]:
        """The entry as ``get_voices`` returns it."""
        return {
            "voiceId": self.voice_id,
            "displayName": self.display_name,
            "tags": {
                "language": list(self.languages),
                "accent": self.accent,
                "gender": self.gender,
                "age": self.age,
                "emotions": [],
                "usecases": list(self.usecases),
            },
        }


_EN = ("english",)
_EN_HI = ("english", "hindi")

CATALOGUE: tuple[Voice, ...] = (
    Voice("sophia", "Sophia", _EN, "american", "female", "young", ("conversational", "narration")),
    Voice("meher", "Meher", _EN_HI, "indian", "female", "young"),
    Voice("magnus", "Magnus", _EN, "american", "male", "middle aged", ("narration",)),
    Voice("avery", "Avery", _EN, "american", "female", "young"),
    Voice("liam", "Liam", _EN, "british", "male", "young"),
    Voice("devansh", "Devansh", _EN_HI, "indian", "male", "young"),
    Voice("kartik", "Kartik", _EN_HI, "indian", "male", "middle aged"),
    Voice("maithili", "Maithili", _EN_HI, "indian", "female", "young"),
    Voice("emily", "Emily", _EN, "american", "female", "young", ("conversational", "support")),
    Voice("george", "George", _EN, "british", "male", "senior", ("narration",)),
    Voice("jordan", "Jordan", _EN, "american", "male", "young"),
    Voice("kaitlyn", "Kaitlyn", _EN, "american", "female", "young"),
)

VOICE_IDS: frozenset[str] = frozenset(v.voice_id for v in CATALOGUE)


def is_known_voice(voice_id: str) -> bool:
    """Whether ``voice_id`` names a catalogue voice."""
    return voice_id in VOICE_IDS


def voices_json() -> dict[str, Any]:
    """The ``get_voices`` response body."""
    return {"voices": [v.to_json() for v in CATALOGUE]}
