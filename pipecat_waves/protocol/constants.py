"""Facts about the Waves live TTS protocol, in one place.

Every value here comes from Smallest's published API documents; where the
documents disagree or are silent, the choice is noted beside the value.
"""

from __future__ import annotations

import re
from typing import Final

#: Path of the live endpoint. ``GET`` upgrades to a WebSocket; ``POST`` answers with SSE.
LIVE_PATH: Final = "/waves/v1/tts/live"
#: Path of the synchronous endpoint (``POST``, audio body).
SYNC_PATH: Final = "/waves/v1/tts"
#: Path of the voice list. Note the hyphen, unlike the underscore in model names.
VOICES_PATH: Final = "/waves/v1/lightning-v3.1/get_voices"
#: Path of the pronunciation dictionaries: ``GET`` lists, ``POST`` creates, and
#: ``PUT`` and ``DELETE`` name the dictionary by ``id`` in the JSON body.
PRONUNCIATION_DICTS_PATH: Final = "/waves/v1/pronunciation-dicts"

DEFAULT_BASE_URL: Final = "wss://api.smallest.ai"

MODELS: Final = frozenset({"lightning_v3.1", "lightning_v3.1_pro"})
DEFAULT_MODEL: Final = "lightning_v3.1"

#: Every language code the API accepts for ``language``.
LANGUAGES: Final = frozenset(
    "auto en hi mr kn ta bn gu te ml pa or es de fr it nl sv pt ru el fi no pl ar zh id ja ko "
    "ms tr vi".split()
)

#: The only output rates the API produces. Anything else fails early, client side.
SAMPLE_RATES: Final = (8000, 16000, 24000, 44100)
DEFAULT_SAMPLE_RATE: Final = 44100

SPEED_MIN: Final = 0.5
SPEED_MAX: Final = 2.0

MAX_BUFFER_DELAY_MS_MIN: Final = 0
MAX_BUFFER_DELAY_MS_MAX: Final = 5000
DEFAULT_MAX_BUFFER_DELAY_MS: Final = 3000

#: Limits of the legacy buffering fields.
MAX_BUFFER_FLUSH_MS: Final = 1000
MAX_COMPLETE_BACKOFF_MS: Final = 10000
#: ``complete_backoff_ms`` a server applies when a request omits it (AsyncAPI default).
DOCUMENTED_COMPLETE_BACKOFF_MS: Final = 4000

#: Pattern and length limit shared by ``context_id``, ``session_id`` and ``request_id``.
ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.-]+$")
ID_MAX_LENGTH: Final = 128

#: Fragments should stay at or below this many characters (about 140 is best).
MAX_FRAGMENT_CHARS: Final = 250
#: Text limit of the HTTP endpoints, after trimming.
MAX_HTTP_TEXT_CHARS: Final = 8000

#: Idle timeout of the live socket, and the largest ``?timeout=`` the server honours.
DEFAULT_IDLE_TIMEOUT_S: Final = 60
MAX_IDLE_TIMEOUT_S: Final = 180

#: Accepted spellings of the keep-alive message type.
PING_TYPES: Final = frozenset({"ping", "keepalive", "keep_alive", "keep-alive"})

#: Audio is signed 16-bit little-endian mono PCM.
BYTES_PER_SAMPLE: Final = 2

#: WebSocket close code used for policy violations such as the concurrency limit.
CLOSE_POLICY_VIOLATION: Final = 1008


def is_valid_id(value: object) -> bool:
    """Tell whether ``value`` is usable as a context, session or request id."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= ID_MAX_LENGTH
        # fullmatch, not match: "$" also matches before a trailing newline.
        and ID_PATTERN.fullmatch(value) is not None
    )
