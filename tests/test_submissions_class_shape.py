"""Five samples in the shape assistants write (a client class with start / send / stop
and an on_message callback, a handler), each carrying exactly one flaw: what the
grader finds in each.

Apart from its flaw each sample is production-grade: sequence numbers, cumulative
acknowledgements, resend after a reconnection or when acknowledgements are
overdue, de-duplication in a store that survives restarts, a bounded send window,
full-jitter backoff, keepalive tuned to notice a dead peer within a second. Their
servers push nothing and check no token: ``slow_consumer``'s stream and
``token_expiry``'s revocation are outside what they were asked to do, and the
grader says "not applicable" rather than charging them as loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import wslab
from wslab.grading import Scorecard, grade

ROOT = Path(__file__).resolve().parent.parent
SUBMISSIONS = ROOT / "data" / "submissions"

OUT_OF_SCOPE = ["slow_consumer", "token_expiry"]  # see the module docstring

# sample -> (the scenario, the criterion) where its one flaw must show
FLAWS = {
    "class_catches_too_little.py": ("network_interruption", "came back"),
    "class_drops_while_offline.py": ("network_interruption", "no loss"),
    "class_server_without_dedup.py": ("lost_acknowledgements", "no duplicates"),
    "class_unbounded_buffer.py": ("queue_overflow", "bounded"),
    "class_waits_close_timeout.py": ("idle_black_hole", "dead peer noticed"),
}

# sample -> {failed scenario: the failed checks}, exactly. None of the samples pushes
# from the server or uses tokens: slow_consumer's stream and token_expiry's revocation
# are "not applicable" to them, never charged as loss.
EXPECTED = {
    # Its reconnect loop catches (OSError, ConnectionClosed): the first handshake of an
    # outage fails (reset in the handshake, or a 503), InvalidMessage/InvalidStatus ends it.
    "class_catches_too_little.py": {
        "network_interruption": {"no loss", "came back"},
        "server_restart": {"no loss", "came back"},
        "shutdown_in_flight": {"no loss", "came back"},
        "reconnect_storm": {"no loss", "came back"},
    },
    # send() returns without keeping the message while not connected (the first
    # message of each client, produced before its connection opened, too).
    "class_drops_while_offline.py": {
        scenario: {"no loss"} for scenario in (
            "network_interruption", "server_restart", "queue_overflow", "idle_black_hole",
            "latency_spike", "lost_acknowledgements", "shutdown_in_flight", "token_expiry",
            "reconnect_storm")
    },
    # Resent messages are processed again (the server only tracks the highest number).
    "class_server_without_dedup.py": {
        "server_restart": {"no duplicates"},
        "lost_acknowledgements": {"no duplicates"},
        "shutdown_in_flight": {"no duplicates"},
        "reconnect_storm": {"no duplicates"},
    },
    # send() never waits: the client holds whatever the server has not acknowledged.
    "class_unbounded_buffer.py": {
        "queue_overflow": {"bounded"},
    },
    # Keepalive notices the dead peer in 0.75 s, then the close handshake waits the
    # default close_timeout (10 s) in the black hole: everything arrives, 10 s late.
    "class_waits_close_timeout.py": {
        "idle_black_hole": {"dead peer noticed", "on time"},
    },
}


def failures(card: Scorecard) -> dict[str, set[str]]:
    return {row.scenario: {c.criterion.key for c in row.failures} | ({"error"} if row.error else set())
            for row in card.rows if not row.passed}


# sample -> (checks passed, checks applicable), graded on every scenario. Loss
# everywhere, then loss and no way back through outages, then duplicates, then
# everything 10 s late, then a buffer without bound: worst to best, none passes.
SCORES = {
    "class_drops_while_offline.py": (38, 47),
    "class_catches_too_little.py": (39, 47),
    "class_server_without_dedup.py": (43, 47),
    "class_waits_close_timeout.py": (45, 47),
    "class_unbounded_buffer.py": (46, 47),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_class_sample_fails_exactly_its_flaw(name):
    assert wslab.designs.get_design(SUBMISSIONS / name).client_shape == "object"
    card = grade(SUBMISSIONS / name, progress=False)
    failed = failures(card)
    assert failed == EXPECTED[name], card.text()
    scenario, criterion = FLAWS[name]
    assert criterion in failed[scenario]
    assert card.score()[:2] == SCORES[name]  # virtual time: exact
    assert not card.passed


def test_the_class_samples_rank_by_their_flaws():
    assert SCORES.keys() == EXPECTED.keys()
    ratio = {name: passed / applicable for name, (passed, applicable) in SCORES.items()}
    assert sorted(ratio, key=ratio.get) == list(SCORES)  # worst first, all different
    assert len(set(ratio.values())) == len(ratio) and max(ratio.values()) < 1


# Scope, lateness and causes ---------------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_what_a_sample_was_not_asked_to_do_is_not_charged(name):
    card = grade(SUBMISSIONS / name, scenarios=OUT_OF_SCOPE, progress=False)
    failed = failures(card)
    assert "slow_consumer" not in failed
    assert "revocation enforced" not in failed.get("token_expiry", set())
    not_applicable = {c.criterion.key: c.measured for row in card.rows for c in row.checks
                      if not c.applicable}
    assert "revocation enforced" in not_applicable and "no loss" in not_applicable, not_applicable


@pytest.mark.timeout(120)
def test_delivering_late_after_close_timeout_is_late_not_lost():
    card = grade(SUBMISSIONS / "class_waits_close_timeout.py", scenarios=["idle_black_hole"],
                 progress=False)
    assert failures(card) == {"idle_black_hole": {"dead peer noticed", "on time"}}
    checks = {c.criterion.key: c for c in card["idle_black_hole"].checks}
    assert checks["no loss"].passed and checks["no loss"].measured.startswith("0 of ")
    assert "late, delivered up to 10." in checks["on time"].measured, checks["on time"].measured


@pytest.mark.timeout(120)
def test_the_handshake_failure_that_ended_the_loop_is_the_cause_on_the_card():
    # The sample's stop() cancels and gathers its dead reconnect loop, which hides the
    # exception from run.errors; the cause is recorded when the task ends.
    card = grade(SUBMISSIONS / "class_catches_too_little.py", scenarios=["network_interruption"],
                 progress=False)
    (cause,) = card["network_interruption"].causes
    text = cause.text()
    assert text.startswith("client 0: InvalidMessage at data/submissions/class_catches_too_little.py:")
    assert "catch handshake failures" in text and text.endswith("lesson 03"), text
