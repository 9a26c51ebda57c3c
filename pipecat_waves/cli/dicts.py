"""``pipecat-waves dicts``: list, create, update and delete pronunciation dictionaries.

Dictionaries are kept by a server (Waves, or a ``pipecat-waves serve``), so
unlike ``say`` these commands never start the embedded server: they need an
API key for Waves or a ``--base-url``. Create and update read a plain text
file of word/pronunciation pairs (see :data:`FILE_FORMAT`). Every failure is a
:class:`~pipecat_waves.cli.commands.CliError` of one line; the key is never shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipecat_waves.cli.commands import (
    API_KEY_ENVS,
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
from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol.constants import PRONUNCIATION_DICTS_PATH

#: What ``--help`` says about the pairs file.
FILE_FORMAT = """\
FILE holds one pair a line: 'word = pronunciation' or 'word<TAB>pronunciation'.
The word is one word as it appears in the text (case matters); the pronunciation
is written in plain words as it should sound ("SQL = sequel", "NYC = New York
City"), not IPA. Blank lines and lines starting with '#' are skipped."""

#: Largest pairs file read.
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Pair:
    """One line of a pairs file."""

    word: str
    pronunciation: str
    line: int


def parse_pairs(text: str, name: str = "FILE") -> list[Pair]:
    """Read word/pronunciation pairs (see :data:`FILE_FORMAT`).

    Raises:
        CliError: Naming the first line at fault.
    """
    pairs: list[Pair] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        sep = "\t" if "\t" in line else "="
        word, found, said = line.partition(sep)
        word, said = word.strip(), " ".join(said.split())
        where = f"{name} line {number}"
        if not found:
            raise CliError(f"{where}: expected 'word = pronunciation' or 'word<TAB>pronunciation'")
        if not word or len(word.split()) != 1:
            raise CliError(f"{where}: put one word before the '{'=' if sep == '=' else 'TAB'}'")
        if not said:
            raise CliError(f"{where}: '{word}' has no pronunciation")
        if word in seen:
            raise CliError(f"{where}: '{word}' is already on line {seen[word]}")
        seen[word] = number
        pairs.append(Pair(word, said, number))
    if not pairs:
        raise CliError(f"{name} has no pairs; write one 'word = pronunciation' a line")
    return pairs


def read_pairs(path: Path) -> list[Pair]:
    """Read a pairs file.

    Raises:
        CliError: It cannot be read, is too big, or holds a bad line.
    """
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CliError(f"{path} is larger than {MAX_FILE_BYTES} bytes; split it")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path} does not exist; give a file of word/pronunciation pairs") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text") from None
    except OSError as e:
        raise CliError(f"cannot read {path} ({e.strerror or e})") from None
    return parse_pairs(text, str(path))


def _words(n: int) -> str:
    return f"{n} word" if n == 1 else f"{n} words"


def _items(pairs: list[Pair]) -> list[dict[str, str]]:
    return [{"word": p.word, "pronunciation": p.pronunciation} for p in pairs]


def _refusal(body: Any, pairs: list[Pair] | None) -> str:
    """The server's reason for a 400, with the file line when it names an item."""
    errors = body.get("error") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        message = body.get("message") if isinstance(body, dict) else None
        return str(message or errors or "no reason given")[:200]
    message = str(first.get("message", "no reason given"))[:200]
    path = first.get("path")
    if pairs and isinstance(path, list) and len(path) >= 2 and path[0] == "items":
        index = path[1]
        if isinstance(index, int) and 0 <= index < len(pairs):
            return f"line {pairs[index].line}: {message}"
    return message


async def _call(
    endpoint: Endpoint, method: str, body: Any = None, pairs: list[Pair] | None = None
) -> Any:
    """One request to the dictionary endpoint; its JSON answer.

    Raises:
        CliError: The server is unreachable, refuses the key or the request.
    """
    import aiohttp

    url = endpoint.http_base + PRONUNCIATION_DICTS_PATH
    timeout = aiohttp.ClientTimeout(total=RECEIVE_TIMEOUT_S, connect=OPEN_TIMEOUT_S)
    name = server_name(endpoint)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            # No redirects: they would carry the key wherever Location points.
            http.request(
                method, url, json=body, headers=endpoint.auth_headers(), allow_redirects=False
            ) as response,
        ):
            status = response.status
            try:
                answer = await response.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError, UnicodeDecodeError):
                answer = None
    except TimeoutError:
        raise unreachable_error(endpoint, endpoint.http_base, "timed out") from None
    except aiohttp.ClientConnectionError as e:
        reason = scrub(str(e) or type(e).__name__, endpoint.api_key)
        raise unreachable_error(endpoint, endpoint.http_base, reason) from None
    if pe.status_kind(status) is pe.ErrorKind.AUTH:
        raise bad_key_error(status, endpoint)
    if status == 404 and isinstance(body, dict) and "id" in body:
        raise CliError(
            f"{name} has no pronunciation dictionary {body['id']!r} for this key; "
            "run 'pipecat-waves dicts list' to see yours"
        )
    if status == 400:
        raise CliError(f"{name} refused the request: {scrub(_refusal(answer, pairs))}")
    if not 200 <= status < 300:
        raise CliError(f"{name} answered HTTP {status} to the dictionary request; check --base-url")
    if answer is None:
        raise CliError(f"{name} sent an answer that is not JSON; check --base-url")
    return answer


def format_dicts(dicts: Any) -> str:
    """Each dictionary's id, then its pairs in the file format (so a list can be edited)."""
    if not isinstance(dicts, list):
        raise CliError("the server sent an unexpected dictionary list; try again later")
    blocks = []
    for entry in dicts:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        raw_items = entry.get("items")
        items: list[Any] = raw_items if isinstance(raw_items, list) else []
        lines = [
            f"  {item.get('word')} = {item.get('pronunciation')}"
            for item in items
            if isinstance(item, dict)
        ]
        created = f", created {entry['createdAt']}" if entry.get("createdAt") else ""
        blocks.append(f"{entry['id']} ({_words(len(lines))}{created})\n" + "\n".join(lines))
    return "\n\n".join(blocks)


async def run_dicts(
    action: str,
    *,
    api_key: str | None,
    base_url: str | None,
    dict_id: str | None = None,
    file: Path | None = None,
) -> str:
    """Carry out ``pipecat-waves dicts ACTION``; the text to print.

    Args:
        action: ``list``, ``create``, ``update`` or ``delete``.
        api_key: Waves key, or None.
        base_url: Server origin, or None for Waves.
        dict_id: The dictionary (update, delete).
        file: The pairs file (create, update).

    Raises:
        CliError: Anything that went wrong, in one line naming the fix.
    """
    if api_key is None and base_url is None:
        raise CliError(
            "dictionaries are kept by a server: set "
            f"{' or '.join(API_KEY_ENVS)} (or pass --api-key) for Waves, or pass "
            "--base-url for a 'pipecat-waves serve'"
        )
    pairs = read_pairs(file) if file is not None else None
    async with open_endpoint(api_key, base_url, backend="tone") as endpoint:
        where = endpoint.describe()
        if action == "list":
            listed = format_dicts(await _call(endpoint, "GET"))
            if not listed:
                return f"no pronunciation dictionaries on {where}; create one with: " + (
                    "pipecat-waves dicts create FILE"
                )
            return listed
        if action == "create":
            assert pairs is not None
            made = await _call(endpoint, "POST", {"items": _items(pairs)}, pairs)
            new_id = made.get("id") if isinstance(made, dict) else None
            return (
                f"created pronunciation dictionary {new_id} with {_words(len(pairs))} on {where}; "
                f'use it with Settings(pronunciation_dicts=["{new_id}"])'
            )
        if action == "update":
            assert pairs is not None
            await _call(endpoint, "PUT", {"id": dict_id, "items": _items(pairs)}, pairs)
            return f"updated pronunciation dictionary {dict_id}: now {_words(len(pairs))}"
        await _call(endpoint, "DELETE", {"id": dict_id})
        return f"deleted pronunciation dictionary {dict_id}"
