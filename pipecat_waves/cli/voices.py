"""``pipecat-waves voices``: the voice catalogue as a table.

Like ``say``, it asks the real Waves API when an API key is at hand and the
embedded local server otherwise (:func:`~pipecat_waves.cli.commands.open_endpoint`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipecat_waves.cli.commands import (
    OPEN_TIMEOUT_S,
    RECEIVE_TIMEOUT_S,
    CliError,
    Endpoint,
    bad_key_error,
    open_endpoint,
    server_name,
    unreachable_error,
)
from pipecat_waves.credentials import scrub
from pipecat_waves.protocol import constants as c
from pipecat_waves.protocol import errors as pe


@dataclass(frozen=True)
class VoiceInfo:
    """One voice of the catalogue, flattened for display."""

    voice_id: str
    name: str
    languages: str
    gender: str
    accent: str


def parse_voices(body: Any) -> list[VoiceInfo]:
    """Read a ``get_voices`` response, tolerating missing tags.

    Raises:
        CliError: The body is not the documented shape.
    """
    entries = body.get("voices") if isinstance(body, dict) else body
    if not isinstance(entries, list):
        raise CliError("the Waves server sent an unexpected voice list; try again later")
    voices = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("voiceId"), str):
            continue
        raw_tags = entry.get("tags")
        tags: dict[str, Any] = raw_tags if isinstance(raw_tags, dict) else {}
        language = tags.get("language", [])
        languages = ", ".join(map(str, language)) if isinstance(language, list) else str(language)
        voices.append(
            VoiceInfo(
                voice_id=entry["voiceId"],
                name=str(entry.get("displayName") or entry["voiceId"]),
                languages=languages or "-",
                gender=str(tags.get("gender") or "-"),
                accent=str(tags.get("accent") or "-"),
            )
        )
    return voices


async def fetch_voices(endpoint: Endpoint) -> list[VoiceInfo]:
    """``GET /waves/v1/lightning-v3.1/get_voices``.

    Raises:
        CliError: The server is unreachable or refuses the key.
    """
    import aiohttp

    url = endpoint.http_base + c.VOICES_PATH
    timeout = aiohttp.ClientTimeout(total=RECEIVE_TIMEOUT_S, connect=OPEN_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            # No redirects: they would carry the key wherever Location points.
            http.get(url, headers=endpoint.auth_headers(), allow_redirects=False) as response,
        ):
            if pe.status_kind(response.status) is pe.ErrorKind.AUTH:
                raise bad_key_error(response.status, endpoint)
            if response.status != 200:
                raise CliError(
                    f"{server_name(endpoint)} answered HTTP {response.status} "
                    "to the voice list; check --base-url"
                )
            body = await response.json(content_type=None)
    except TimeoutError:
        raise unreachable_error(endpoint, endpoint.http_base, "timed out") from None
    except aiohttp.ClientConnectionError as e:
        reason = scrub(str(e) or type(e).__name__, endpoint.api_key)
        raise unreachable_error(endpoint, endpoint.http_base, reason) from None
    except (aiohttp.ContentTypeError, json.JSONDecodeError):
        raise CliError(
            f"{server_name(endpoint)} sent a voice list that is not JSON; check --base-url"
        ) from None
    return parse_voices(body)


def format_voices(voices: list[VoiceInfo]) -> str:
    """A table a person can scan: id, name, language, gender, accent."""
    header = ("id", "name", "language", "gender", "accent")
    rows = [header] + [(v.voice_id, v.name, v.languages, v.gender, v.accent) for v in voices]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


async def run_voices(*, api_key: str | None, base_url: str | None) -> str:
    """List the voices as a table, with a closing hint on how to use one.

    Raises:
        CliError: The voice list cannot be fetched.
    """
    # The voice list needs no speech, so the embedded server uses the tone backend.
    async with open_endpoint(api_key, base_url, backend="tone") as endpoint:
        voices = await fetch_voices(endpoint)
        where = endpoint.describe()
    if not voices:
        fix = (
            "check the account in the Smallest.ai console"
            if endpoint.is_smallest
            else ("check the server's voice catalogue")
        )
        raise CliError(f"{where} lists no voices; {fix}")
    note = " (no WAVES_API_KEY set: local catalogue)" if endpoint.local else ""
    return (
        f"{format_voices(voices)}\n\n{len(voices)} voices from {where}{note}. "
        f'Use one with: pipecat-waves say "Hello" --voice {voices[0].voice_id}'
    )
