"""The API key: checked once, never shown, never sent in clear to another machine.

Every text the package builds from something it did not write itself (an
exception from a library, a close reason or error from a server) passes
through :func:`scrub` before it is logged, raised, handed to an event handler
or put in a frame, so a key that slipped into it is never repeated.
"""

from __future__ import annotations

import ipaddress
import re

#: What stands in for a key wherever one would have appeared.
REDACTED = "***"

#: ``Bearer <token>`` as it appears in a header dump, whatever the token holds.
_BEARER = re.compile(r"(?i)(bearer)(\s+|%20|\\s)\S+")


#: Every key this process was given (its forms, really): scrubbed from all
#: text the package produces, whichever service or command it came through.
_KNOWN: set[str] = set()


class ApiKeyError(ValueError):
    """The API key cannot be used as given; the message never contains it."""


def clean_api_key(api_key: object) -> str:
    """Check an API key and return it without surrounding whitespace.

    A key pasted from a console or read from a file often carries a trailing
    newline or space; those are dropped. Anything that cannot travel in an
    HTTP header (a space, a control or non-ASCII character inside the key)
    is refused here, at construction, instead of failing on every attempt.

    Raises:
        ApiKeyError: Naming the problem and where it sits, never the key.
    """
    if isinstance(api_key, str):
        remember(api_key)
    else:
        raise ApiKeyError(
            f"api_key must be a string, not {type(api_key).__name__}; pass the key from the "
            "Smallest.ai console (or set WAVES_API_KEY)"
        )
    key = api_key.strip()
    if not key:
        raise ApiKeyError(
            "api_key is empty; pass the key from the Smallest.ai console (or set WAVES_API_KEY)"
        )
    for position, char in enumerate(key, start=1):
        if not "!" <= char <= "~":
            raise ApiKeyError(
                f"api_key has {_describe(char)} at character {position} of {len(key)}; "
                "an API key is printable ASCII without spaces. Copy it again from the "
                "Smallest.ai console."
            )
    return key


def _describe(char: str) -> str:
    if char.isspace():
        return "a whitespace character"
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return "a control character"
    return "a non-ASCII character"


def remember(secret: str) -> None:
    """Scrub ``secret`` from everything the package says from now on."""
    _KNOWN.update(_forms(secret))


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every known key (and ``secrets``, and any bearer token) replaced.

    Libraries quote a bad header in several ways (as is, escaped, stripped),
    so each of those forms is replaced, then anything after ``Bearer``.
    """
    forms = set(_KNOWN)
    for secret in secrets:
        if secret:
            forms |= _forms(secret)
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, REDACTED)
    return _BEARER.sub(rf"\1 {REDACTED}", text)


def _forms(secret: str) -> set[str]:
    forms = set()
    for value in (secret, secret.strip()):
        forms.add(value)
        forms.add(repr(value)[1:-1])
        forms.add(value.encode("unicode_escape").decode("ascii"))
        forms.add(value.encode("utf-8", "replace").decode("latin-1"))
    # Too short a form would blank out ordinary words.
    return {form for form in forms if len(form) >= 4}


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` names this machine."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(scheme: str, host: str | None, *, flag: str = "base_url") -> None:
    """Refuse to send a credential in clear text to another machine.

    Args:
        scheme: ``ws``, ``wss``, ``http`` or ``https``.
        host: The host the credential would go to.
        flag: How the user named the URL, for the message.

    Raises:
        ValueError: ``scheme`` is plain text and ``host`` is not this machine.
    """
    if scheme in ("ws", "http") and not is_loopback_host(host):
        secure = "wss" if scheme == "ws" else "https"
        raise ValueError(
            f"refusing to send the API key unencrypted ({scheme}://) to {host}; use a "
            f"{secure}:// {flag} (plain {scheme}:// is only for a server on this machine, "
            "127.0.0.1)"
        )
