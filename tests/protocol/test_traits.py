"""What is known of a server: read from a probe report or a file, merged, used by the session."""

from __future__ import annotations

import json

import pytest

from pipecat_waves.probe.findings import (
    Finding,
    FindingKey,
    IdleFacts,
    OutcomeFacts,
    PingFacts,
    ProbeReport,
    idle_finding_of,
    ping_finding_of,
)
from pipecat_waves.protocol import responses as rs
from pipecat_waves.protocol import session as sn
from pipecat_waves.protocol.traits import ServerTraits
from tests.protocol.test_session import PARAMS, error, make_session, ready, say, sends

#: The edit loop's tier: ``python -m pytest -m quick`` (see pyproject.toml).
pytestmark = pytest.mark.quick


def report(*findings: Finding) -> ProbeReport:
    return ProbeReport("ws://127.0.0.1:1", 569, list(findings))


K = FindingKey
PING_REFUSED = ping_finding_of(PingFacts("error", error="x"))
PING_ANSWERED = ping_finding_of(PingFacts("pong", pong_after_ms=1))
BACKOFF_REFUSED = Finding.of(
    K.BACKOFF_WITH_CONTEXT,
    "refused",
    "error: no",
    {"complete_backoff_with_context": "refuse"},
    facts=OutcomeFacts("refuse", "no"),
)
IDLE_30 = idle_finding_of(K.IDLE_DEFAULT, IdleFacts(None, 65000, closed_after_ms=30004))
QUERY_HONOURED = idle_finding_of(K.IDLE_QUERY, IdleFacts("1", 3000, closed_after_ms=1004))
QUERY_IGNORED = idle_finding_of(K.IDLE_QUERY, IdleFacts("1", 3000))


def test_the_words_are_rendered_from_the_facts_as_the_table_always_showed_them():
    rows = [(x.point, x.observed, x.evidence) for x in (PING_REFUSED, PING_ANSWERED, IDLE_30)]
    assert rows == [
        ("ping answered", "no pong", "error: x"),
        ("ping answered", "pong", "pong after 1 ms"),
        ("idle timeout (default)", "closed after 30 s", "no ?timeout=; 30004 ms"),
    ]
    assert (QUERY_HONOURED.point, QUERY_HONOURED.observed, QUERY_HONOURED.evidence) == (
        "idle timeout with ?timeout=1",
        "closed after 1 s",
        "?timeout=1; 1004 ms",
    )
    assert QUERY_IGNORED.observed == "open after 3 s"
    assert IDLE_30.switches == {"idle_timeout_s": 30}
    assert PING_REFUSED.switches == {"ping_supported": False}


# ---------------------------------------------------------------- reading


def test_a_probe_report_gives_each_point_it_could_tell():
    traits = ServerTraits.from_probe(report(PING_REFUSED, BACKOFF_REFUSED, IDLE_30, QUERY_IGNORED))
    assert traits == ServerTraits(
        answers_pings=False,
        complete_backoff_with_context="refuse",
        idle_timeout_s=30.0,
        honours_timeout_query=False,
    )


def test_points_a_probe_did_not_tell_stay_unknown():
    assert ServerTraits.from_probe(report()) == ServerTraits()
    traits = ServerTraits.from_probe(
        report(PING_ANSWERED, Finding.of(K.BACKOFF_WITH_CONTEXT, "n/a", facts=OutcomeFacts(None)))
    )
    assert traits == ServerTraits(answers_pings=True)


def test_a_timeout_query_honoured_or_not():
    assert ServerTraits.from_probe(report(QUERY_HONOURED)).honours_timeout_query is True
    assert ServerTraits.from_probe(report(QUERY_IGNORED)).honours_timeout_query is False
    late = idle_finding_of(K.IDLE_QUERY, IdleFacts("1", 3000, closed_after_ms=2480))
    assert (late.observed, late.evidence) == ("closed after 2 s", "?timeout=1; 2480 ms")
    assert ServerTraits.from_probe(report(late)).honours_timeout_query is False
    # A default as short as what was asked cannot tell the query apart.
    short = idle_finding_of(K.IDLE_DEFAULT, IdleFacts(None, 65000, closed_after_ms=1000))
    assert ServerTraits.from_probe(report(short, QUERY_HONOURED)).honours_timeout_query is None


def test_traits_round_trip_through_json_and_files(tmp_path):
    traits = ServerTraits(answers_pings=False, complete_backoff_with_context="ignore")
    assert ServerTraits.from_json(traits.to_json()) == traits
    path = tmp_path / "traits.json"
    path.write_text(json.dumps(traits.to_json()))
    assert ServerTraits.from_file(path) == traits
    probe_file = tmp_path / "probe.json"
    probe_file.write_text(json.dumps(report(PING_REFUSED, BACKOFF_REFUSED).to_json()))
    assert ServerTraits.from_file(probe_file) == ServerTraits(
        answers_pings=False, complete_backoff_with_context="refuse"
    )


def test_findings_to_table_and_json_and_back_give_the_same_traits_and_table(tmp_path):
    dicts = Finding.of(
        K.DICTS_ON_SOCKET,
        "ignored",
        "900 ms of audio with the dictionary, 1000 ms without",
        {"pronunciation_dicts_on_socket": "ignore"},
        facts=OutcomeFacts("ignore"),
    )
    first = report(PING_REFUSED, BACKOFF_REFUSED, IDLE_30, QUERY_HONOURED, dicts)
    traits = ServerTraits.from_probe(first)
    assert traits == ServerTraits(
        answers_pings=False,
        complete_backoff_with_context="refuse",
        idle_timeout_s=30.0,
        honours_timeout_query=True,
        pronunciation_dicts_on_socket="ignore",
    )
    data = json.loads(json.dumps(first.to_json()))
    assert data["version"] == 2
    assert data["findings"][3]["key"] == "idle_query"
    assert data["findings"][3]["facts"]["closed_after_ms"] == 1004
    again = ProbeReport.from_json(data)
    assert again.findings == first.findings
    assert again.table() == first.table()
    assert ServerTraits.from_json(data) == traits


def test_a_report_written_before_facts_gives_what_its_switches_hold():
    # Version 1 had labels and switches only: what those hold still counts;
    # what was only in the prose (the ?timeout=1 close, a refused ping) stays unknown.
    old = [
        {"point": "ping answered", "observed": "pong", "evidence": "pong after 3 ms",
         "switches": {"ping_supported": True}},
        {"point": "complete_backoff_ms: 0 with context_id", "observed": "ignored",
         "evidence": "", "switches": {"complete_backoff_with_context": "ignore"}},
        {"point": "idle timeout (default)", "observed": "closed after 30 s",
         "evidence": "no ?timeout=; 30004 ms", "switches": {"idle_timeout_s": 30}},
        {"point": "idle timeout with ?timeout=1", "observed": "closed after 1 s",
         "evidence": "?timeout=1; 1004 ms", "switches": {}},
        {"point": "handshake and TTFB (lightning_v3.1)", "observed": "audio", "evidence": "",
         "switches": {}},
        {"point": "something a newer probe asks", "observed": "x", "switches": {}},
    ]  # fmt: skip
    read = ProbeReport.from_json({"version": 1, "findings": old})
    assert [x.key for x in read.findings] == [
        K.PING, K.BACKOFF_WITH_CONTEXT, K.IDLE_DEFAULT, K.IDLE_QUERY, K.TIMING, None
    ]  # fmt: skip
    assert ServerTraits.from_probe(read) == ServerTraits(
        answers_pings=True, complete_backoff_with_context="ignore", idle_timeout_s=30.0
    )


@pytest.mark.parametrize(
    "facts",
    [
        {"answer": "maybe"},
        {"answer": "pong", "pong_after_ms": "soon"},
        {"answer": "pong", "when": 1},
        [],
    ],
)
def test_malformed_facts_are_refused(facts):
    bad = {"findings": [{"point": "p", "observed": "o", "key": "ping", "facts": facts}]}
    with pytest.raises(ValueError, match="malformed"):
        ProbeReport.from_json(bad)


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ([], "JSON object"),
        ({"answer_pings": True}, "unknown server trait(s) answer_pings"),
        ({"answers_pings": "yes"}, "answers_pings must be true, false or null"),
        ({"idle_timeout_s": "60"}, "idle_timeout_s must be a number"),
        ({"idle_timeout_s": 0}, "idle_timeout_s must be above 0"),
        ({"complete_backoff_with_context": "drop"}, "'apply', 'ignore', 'refuse' or None"),
        ({"findings": "none"}, "not a probe report"),
        ({"findings": [], "characters": None}, "'characters' must be a whole number"),
    ],
)
def test_malformed_traits_are_refused_with_what_is_wrong(data, names):
    with pytest.raises(ValueError) as caught:
        ServerTraits.from_json(data)
    assert names in str(caught.value)


def test_a_missing_or_broken_file_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(ValueError) as caught:
        ServerTraits.from_file(tmp_path / "nope.json")
    assert "nope.json" in str(caught.value) and "No such file" in str(caught.value)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError) as caught:
        ServerTraits.from_file(broken)
    assert "broken.json" in str(caught.value) and "is not JSON" in str(caught.value)


def test_idle_timeout_for_a_requested_timeout():
    assert ServerTraits().idle_timeout_for(60) == 60
    assert ServerTraits(idle_timeout_s=30).idle_timeout_for(60) == 60
    assert ServerTraits(idle_timeout_s=30, honours_timeout_query=False).idle_timeout_for(60) == 30
    # A longer timeout of the server's own never stretches what was asked.
    assert ServerTraits(idle_timeout_s=90, honours_timeout_query=False).idle_timeout_for(60) == 60


def test_merging_takes_every_point_the_newer_traits_know():
    older = ServerTraits(answers_pings=True, idle_timeout_s=60)
    newer = ServerTraits(answers_pings=False, complete_backoff_with_context="refuse")
    assert older.merged(newer) == ServerTraits(
        answers_pings=False, complete_backoff_with_context="refuse", idle_timeout_s=60
    )
    assert older.merged(ServerTraits()) == older


# ------------------------------------------------------- used by the session


def traits_session(traits: ServerTraits) -> sn.WavesSession:
    return sn.WavesSession(sn.SessionConfig(sample_rate=PARAMS.sample_rate), traits)


def test_a_known_complete_backoff_refusal_means_the_field_is_never_sent():
    s = traits_session(ServerTraits(complete_backoff_with_context="refuse"))
    ready(s)
    msgs = sends(say(s, "r", "Hello there."))
    assert msgs and all("complete_backoff_ms" not in m for m in msgs)
    assert all(m["context_id"] == "r" for m in msgs), "the first context is the only one"


@pytest.mark.parametrize("backoff", ["apply", "ignore", None])
def test_other_known_readings_still_ask_for_no_hold_back(backoff):
    s = traits_session(ServerTraits(complete_backoff_with_context=backoff))
    ready(s)
    assert [m["complete_backoff_ms"] for m in sends(say(s, "r", "Hello there."))] == [0, 0]


@pytest.mark.parametrize("answers", [True, False])
def test_ping_support_is_always_checked_whatever_the_hint(answers):
    # A wrong "refused" would switch stall detection off; a wrong "answered"
    # would take a refused ping for a reply's error. The first ping costs nothing.
    s = traits_session(ServerTraits(answers_pings=answers))
    ready(s, pings=not answers)  # asserts the first ping still goes out
    assert s.keepalive.ping_supported is (not answers)
    assert s.traits().answers_pings is (not answers), "what the server did wins over the hint"


def test_silence_to_a_probe_ping_is_not_taken_for_a_refusal():
    silent = ping_finding_of(PingFacts("silence"))
    assert (silent.observed, silent.evidence) == ("no pong", "no answer")
    assert ServerTraits.from_probe(report(silent)).answers_pings is None


def test_a_wrong_refusal_hint_costs_the_hold_back_not_a_word():
    # The hint says the field is refused; this server would have applied it.
    s = traits_session(ServerTraits(complete_backoff_with_context="refuse"))
    ready(s)
    msgs = sends(say(s, "r", "Hi."))
    assert [m["text"] for m in msgs] == ["Hi.", ""], "the whole text goes, once"


def test_what_a_session_learns_comes_back_as_traits():
    s = make_session(keepalive_interval_s=20.0)
    assert s.traits() == ServerTraits()
    ready(s, pings=False)
    say(s, "r", "Hello there.")
    s.receive(1, error("'complete_backoff_ms' cannot be combined with 'context_id'"), 0.1)
    s.receive(2, error("Connection timed out after 8 seconds of inactivity"), 8.0)
    s.connection_lost(2, 8.0)
    assert s.traits() == ServerTraits(
        answers_pings=False,
        complete_backoff_with_context="refuse",
        idle_timeout_s=8.0,
        honours_timeout_query=False,
    )
    # A later session handed those traits starts where this one finished.
    later = traits_session(s.traits())
    later.start()
    out = later.connection_opened(1, 0.0)
    out += later.send_text("q", "Next.", PARAMS, 0.0, max_buffer_delay_ms=0)
    texts = [m for m in sends(out) if "text" in m]
    assert texts and all("complete_backoff_ms" not in m for m in texts)


def test_an_idle_socket_closed_within_moments_is_not_taken_for_an_idle_timeout():
    s = make_session(keepalive_interval_s=20.0)
    ready(s)
    s.connection_lost(2, 0.5)  # a blip or a restart, half a second in
    assert s.traits().idle_timeout_s is None
    s.connection_lost(1, 0.5)
    assert s.traits().honours_timeout_query is None


def test_given_traits_are_kept_where_the_session_learned_nothing():
    given = ServerTraits(answers_pings=True, idle_timeout_s=45.0)
    s = traits_session(given)
    assert s.traits() == given
    ready(s)
    s.receive(1, rs.Pong(), 0.1)
    assert s.traits() == given
