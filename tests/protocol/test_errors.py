"""Which kind of error each server answer is, and the fix said for it: one table, one home.

Pure: no sockets. The last tests read the package's source to prove that no
module but :mod:`pipecat_waves.protocol.errors` matches a server's error text,
an HTTP status or a close code to decide what it means.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pipecat.utils.errors import ErrorCategory

from pipecat_waves import errors as service_errors
from pipecat_waves.protocol import errors as pe
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol.constants import CLOSE_POLICY_VIOLATION

pytestmark = pytest.mark.quick

K = pe.ErrorKind
VOICE = pe.VOICE_FIX

#: (code, message) as a server sends them → kind, Pipecat category, fix sentence.
TABLE: list[tuple[str | None, str, pe.ErrorKind, ErrorCategory, str]] = [
    ("INVALID_VOICE", "voice 'x' not found", K.VOICE, ErrorCategory.INVALID_REQUEST, pe.VOICE_FIX),
    (None, "Unknown voice_id 'x'", K.VOICE, ErrorCategory.INVALID_REQUEST, pe.VOICE_FIX),
    ("INVALID_FIELD", "bad voice_id", K.INVALID_REQUEST, ErrorCategory.INVALID_REQUEST, VOICE),
    (
        "INVALID_FIELD",
        "language 'xx' is not supported",
        K.INVALID_REQUEST,
        ErrorCategory.INVALID_REQUEST,
        pe.FIXES[1][1],
    ),
    (None, "unsupported language", K.SERVER, ErrorCategory.SERVER, pe.FIXES[1][1]),
    ("MISSING_FIELD", "'text' is required", K.INVALID_REQUEST, ErrorCategory.INVALID_REQUEST, ""),
    ("INVALID_MESSAGE", "not JSON", K.INVALID_REQUEST, ErrorCategory.INVALID_REQUEST, ""),
    ("TEXT_TOO_LONG", "too long", K.INVALID_REQUEST, ErrorCategory.INVALID_REQUEST, ""),
    (
        "CONTENT_FILTER_BLOCKED",
        "blocked",
        K.CONTENT_FILTER,
        ErrorCategory.APPLICATION,
        pe.FIXES[2][1],
    ),
    ("UNAUTHORIZED", "bad token", K.AUTH, ErrorCategory.AUTHENTICATION, ""),
    ("unauthorized", "lower-case code", K.AUTH, ErrorCategory.AUTHENTICATION, ""),
    ("401", "HTTP 401", K.AUTH, ErrorCategory.AUTHENTICATION, ""),
    ("403", "HTTP 403", K.AUTH, ErrorCategory.AUTHENTICATION, ""),
    (None, "Invalid API key", K.AUTH, ErrorCategory.AUTHENTICATION, ""),
    (None, "missing api_key", K.AUTH, ErrorCategory.AUTHENTICATION, ""),
    (None, "Authentication failed", K.AUTH, ErrorCategory.AUTHENTICATION, ""),
    (None, "Forbidden", K.AUTH, ErrorCategory.AUTHENTICATION, ""),
    ("RATE_LIMIT", "slow down", K.RATE_LIMIT, ErrorCategory.RATE_LIMIT, ""),
    ("CONCURRENCY_LIMIT", "limit", K.RATE_LIMIT, ErrorCategory.RATE_LIMIT, ""),
    ("TOO_MANY_REQUESTS", "x", K.RATE_LIMIT, ErrorCategory.RATE_LIMIT, ""),
    ("429", "HTTP 429", K.RATE_LIMIT, ErrorCategory.RATE_LIMIT, ""),
    (None, "Concurrency limit reached", K.RATE_LIMIT, ErrorCategory.RATE_LIMIT, ""),
    (None, "rate-limit exceeded", K.RATE_LIMIT, ErrorCategory.RATE_LIMIT, ""),
    (None, "Too many requests", K.RATE_LIMIT, ErrorCategory.RATE_LIMIT, ""),
    ("QUOTA_EXCEEDED", "out of credits", K.QUOTA, ErrorCategory.QUOTA, ""),
    (pe.CONNECTION_LOST, "lost", K.CONNECTION_LOST, ErrorCategory.CONNECTIVITY, ""),
    ("INTERNAL", "model overloaded", K.SERVER, ErrorCategory.SERVER, ""),
    (None, "something broke", K.SERVER, ErrorCategory.SERVER, ""),
]


def err(code: str | None, message: str, request_id: str | None = None) -> rs.ServerError:
    return rs.ServerError(rs.Envelope(request_id=request_id), message, code=code)


@pytest.mark.parametrize(("code", "message", "kind", "category", "fix"), TABLE)
def test_every_known_server_error_has_its_kind_category_and_fix(
    code: str | None, message: str, kind: pe.ErrorKind, category: ErrorCategory, fix: str
) -> None:
    error = err(code, message)
    assert pe.kind_of(error) is kind
    assert service_errors.category_of(error) is category
    assert pe.fix_for(error) == fix
    assert service_errors.fix_for(error) == fix


def test_every_kind_has_a_pipecat_category_and_every_code_a_row() -> None:
    assert set(service_errors.KIND_CATEGORIES) == set(pe.ErrorKind)
    codes = {code.upper() for code, *_ in TABLE if code is not None}
    assert set(pe.ERROR_CODES) <= codes, "each known code is walked by the table"


@pytest.mark.parametrize(
    ("status", "kind", "category"),
    [
        (401, K.AUTH, ErrorCategory.AUTHENTICATION),
        (403, K.AUTH, ErrorCategory.AUTHENTICATION),
        (429, K.RATE_LIMIT, ErrorCategory.RATE_LIMIT),
        (400, None, None),
        (404, None, None),
        (500, None, ErrorCategory.SERVER),
        (None, None, None),
    ],
)
def test_http_statuses(status: int | None, kind: object, category: object) -> None:
    assert pe.status_kind(status) is kind
    if status is not None and category is not None:
        assert service_errors.http_category(status, err(str(status), "x")) is category
    if status == 400:
        # A status with no meaning of its own: the body decides.
        assert service_errors.http_category(400, err("400", "bad voice")) is (
            ErrorCategory.INVALID_REQUEST
        )


def test_close_codes_and_reasons() -> None:
    for code in pe.AUTH_CLOSE_CODES:
        assert pe.closed_for_key(code, "")
    assert pe.closed_for_key(1008, "Unauthorized")
    assert not pe.closed_for_key(1000, "bye")
    assert pe.closed_for_limit(CLOSE_POLICY_VIOLATION)
    assert not pe.closed_for_limit(1000) and not pe.closed_for_limit(None)


def test_subjects_named_by_code_or_message() -> None:
    assert pe.names(err("COMPLETE_BACKOFF_NOT_ALLOWED", "x"), pe.Subject.COMPLETE_BACKOFF)
    assert pe.names(err(None, "pronunciation_dicts unsupported"), pe.Subject.PRONUNCIATION_DICTS)
    assert not pe.names(err("INVALID_FIELD", "sample_rate"), pe.Subject.VOICE)
    assert pe.names_model(err(None, "unknown model"), "lightning_v9")
    assert pe.names_model(err(None, "'lightning_v9' not offered"), "lightning_v9")
    assert not pe.names_model(err(None, "busy"), "lightning_v9")


def test_idle_timeouts_and_ping_complaints_are_only_unattributed_errors() -> None:
    assert pe.is_idle_timeout(err(None, "Connection timed out due to inactivity"))
    assert pe.is_idle_timeout(err("IDLE_TIMEOUT", "bye"))
    assert not pe.is_idle_timeout(err(None, "idle", request_id="r1"))
    assert pe.complains_of_ping(err("INVALID_MESSAGE", "unknown message type"))
    assert pe.complains_of_ping(err(None, "'text' is required"))
    assert not pe.complains_of_ping(err(None, "'text' is required", request_id="r1"))
    assert not pe.complains_of_ping(err("RATE_LIMIT", "slow down"))


def test_key_messages_fit_the_server_and_never_need_the_key() -> None:
    remote = pe.key_refused(401, key_given=True, server="api.smallest.ai", local=False)
    assert "rejected the API key (HTTP 401)" in remote and "Smallest.ai console" in remote
    local = pe.key_refused(403, key_given=True, server="127.0.0.1:1", local=True)
    assert "local Waves server at 127.0.0.1:1" in local and "started with" in local
    none = pe.key_refused(401, key_given=False, server="h:1", local=False)
    assert "requires an API key and none was given" in none
    cli = pe.cli_key_refused(
        401, key_given=True, smallest=True, server_name="Smallest.ai Waves", envs=("A", "B")
    )
    assert "set A (or pass --api-key)" in cli
    cli = pe.cli_key_refused(
        401, key_given=False, smallest=False, server_name="the server", envs=("A", "B")
    )
    assert cli.startswith("the server requires an API key") and "A or B" in cli
    assert "--voice" in pe.cli_unknown_voice("x", flag=True)
    assert "--voice" not in pe.cli_unknown_voice("x")
    assert "retry after 2 s" in pe.rate_limited_message("this reply", 2.0)
    assert "HTTP 429)" in pe.rate_limited_message("the connection")


# ------------------------------------------------ the one home, checked

PACKAGE = Path(pe.__file__).resolve().parents[1]
#: The one home of the rules, and the local server (which sends errors, not reads them).
EXEMPT = {PACKAGE / "protocol" / "errors.py"}
EXEMPT_DIRS = {PACKAGE / "server"}
#: Words of server error text; a module testing a string for one is classifying it.
ERROR_WORDS = (
    "voice",
    "model",
    "language",
    "content_filter",
    "api key",
    "api_key",
    "apikey",
    "unauthori",
    "authenticat",
    "forbidden",
    "rate",
    "limit",
    "concurren",
    "too many",
    "quota",
    "timed out",
    "timeout",
    "idle",
    "inactiv",
    "ping",
    "complete_backoff",
    "pronunciation_dicts",
)
#: HTTP statuses and close codes whose meaning is decided in one place.
STATUS_CODES = {401, 403, 429, *pe.AUTH_CLOSE_CODES}


def _error_word(value: object) -> bool:
    return isinstance(value, str) and any(word in value.lower() for word in ERROR_WORDS)


def _constants(node: ast.AST) -> list[object]:
    """String and number literals of ``node`` itself, or of a literal collection."""
    if isinstance(node, ast.Constant):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [e.value for e in node.elts if isinstance(e, ast.Constant)]
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("frozenset", "set"):
        return [v for arg in node.args for v in _constants(arg)]
    return []


def classifying_lines(source: str) -> list[tuple[int, str]]:
    """Lines of ``source`` that match error text, statuses or close codes."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    iterated: dict[str, list[object]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension) and isinstance(node.target, ast.Name):
            iterated[node.target.id] = _constants(node.iter)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                left = node.left
                words = _constants(left)
                if isinstance(left, ast.Name):
                    words += iterated.get(left.id, [])
                if isinstance(op, ast.In | ast.NotIn) and any(map(_error_word, words)):
                    found.append((node.lineno, ast.unparse(node)))
                numbers = _constants(left) + _constants(right)
                if any(n in STATUS_CODES for n in numbers if isinstance(n, int)):
                    found.append((node.lineno, ast.unparse(node)))
                if any(n in {str(c) for c in STATUS_CODES} for n in numbers):
                    found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in ("compile", "search", "match", "fullmatch", "findall") and any(
                _error_word(v) for arg in node.args[:1] for v in _constants(arg)
            ):
                found.append((node.lineno, ast.unparse(node)))
            if name in ("startswith", "endswith") and any(
                _error_word(v) for arg in node.args for v in _constants(arg)
            ):
                found.append((node.lineno, ast.unparse(node)))
            if name in ("frozenset", "set") and any(
                n in STATUS_CODES for n in _constants(node) if isinstance(n, int)
            ):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_other_module_classifies_server_errors() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in EXEMPT or any(d in path.parents for d in EXEMPT_DIRS):
            continue
        for line, code in classifying_lines(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {code}")
    assert not offenders, (
        "server errors are classified in pipecat_waves/protocol/errors.py only; move these "
        "rules there:\n" + "\n".join(offenders)
    )


@pytest.mark.parametrize(
    "snippet",
    [
        'if "voice" in message.lower():\n    pass',
        'ok = "voice" not in f"{code} {message}".lower()',
        "if status in (401, 403):\n    pass",
        "if response.status == 429:\n    pass",
        'if code == "429":\n    pass',
        "CODES = frozenset({4001, 4003})",
        'WORDS = re.compile(r"rate.?limit")',
        'found = any(w in text for w in ("unauthori", "api key"))',
        'idle = reason.startswith("idle")',
    ],
)
def test_the_check_catches_each_way_of_classifying(snippet: str) -> None:
    assert classifying_lines(snippet), snippet


def test_the_check_leaves_other_substring_tests_alone() -> None:
    assert not classifying_lines('if "id" in body and "/waves/" in path:\n    pass')
    assert not classifying_lines("if status == 404 or status >= 500:\n    pass")
    # The one home itself is what the check would flag.
    assert classifying_lines(Path(pe.__file__).read_text(encoding="utf-8"))
