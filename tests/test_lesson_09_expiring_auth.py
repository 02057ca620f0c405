"""Lesson 09 (expiring auth): the checker, the experiments and the prompt codes behave
as notebooks/09_expiring_auth.ipynb says. Real sockets on loopback; every lab run of
the file goes at once, in one event loop, from one module fixture."""

from __future__ import annotations

import asyncio

import pytest
from matplotlib.figure import Figure

import wslab
from wslab.exercises.expiring_auth import check_answers, check_reaction
from wslab.experiments import expiring_auth as experiment
from wslab.grading import CRITERIA

pytestmark = pytest.mark.timeout(60)


def solution(close_code):  # the notebook's worked solution
    if close_code == 4401:
        return "refresh"
    if close_code == 4403:
        return "stop"
    return "back off"


def retries_when_revoked(close_code):
    """Every close is a reason to come back: the revoked client keeps knocking."""
    return "refresh" if close_code == 4401 else "back off"


def refreshes_when_revoked(close_code):
    return "refresh" if close_code in (4401, 4403) else "back off"


def stops_on_any_auth_error(close_code):
    """Reads 4401 as 'forbidden' too: a session nobody revoked ends at its first expiry."""
    return "stop" if close_code in (4401, 4403) else "back off"


def keeps_the_expired_token(close_code):
    return "stop" if close_code == 4403 else "back off"


def never_waits(close_code):
    return "stop" if close_code == 4403 else "refresh"


def gives_up_on_server_errors(close_code):
    return {4401: "refresh", 4403: "stop", 1011: "stop"}.get(close_code, "back off")


CANDIDATES = [solution, retries_when_revoked, refreshes_when_revoked, stops_on_any_auth_error,
              keeps_the_expired_token, never_waits, gives_up_on_server_errors]


@pytest.fixture(scope="module")
def lab():
    scenario = wslab.SCENARIOS["token_expiry"]
    prompts = wslab.prompts.load("09_expiring_auth")

    async def everything():
        checks = asyncio.gather(*(check_reaction(fn) for fn in CANDIDATES))
        runs = asyncio.gather(
            wslab.arun(prompts.design("vague"), scenario),
            wslab.arun(prompts.design("better"), scenario),
            wslab.arun(experiment.strict_design(prompts.design("vague")), scenario),
            wslab.arun(experiment.auth_step(refresh=False), scenario),
            experiment.lifetime_sweep([0.3, 5.0], scenario),
        )
        return await asyncio.gather(checks, runs)

    verdicts, (vague, better, strict, no_refresh, sweep) = asyncio.run(everything())
    return {"verdicts": dict(zip([fn.__name__ for fn in CANDIDATES], verdicts)),
            "vague": vague, "better": better, "strict": strict, "no_refresh": no_refresh,
            "sweep": {row.ttl_s: row for row in sweep}}


# The checker ----------------------------------------------------------------------------


def test_checker_passes_the_worked_solution(lab):
    verdict = lab["verdicts"]["solution"]
    assert verdict, verdict.message
    assert "refused once with 4403" in verdict.message and "nothing lost" in verdict.message


def test_checker_counts_the_refusals_of_a_revoked_client_that_backs_off(lab):
    verdict = lab["verdicts"]["retries_when_revoked"]
    assert not verdict
    assert "client 1 was revoked at 0.5 s" in verdict.message
    assert "answered 'back off'" in verdict.message and "4403 means: stop" in verdict.message
    refusals = int(verdict.message.split("refused with 4403 ")[1].split(" times")[0])
    assert refusals >= 2


def test_checker_sees_the_provider_refuse_a_refresh_after_4403(lab):
    verdict = lab["verdicts"]["refreshes_when_revoked"]
    assert not verdict and "answered 'refresh'" in verdict.message
    assert "identity provider" in verdict.message and "TokenRevoked" in verdict.message


def test_checker_says_4401_is_not_a_revocation(lab):
    verdict = lab["verdicts"]["stops_on_any_auth_error"]
    assert not verdict
    assert "4401" in verdict.message and "answered 'stop'" in verdict.message
    assert "nobody had revoked" in verdict.message and "messages were refused" in verdict.message


def test_checker_shows_the_expired_token_refused_again_and_again(lab):
    verdict = lab["verdicts"]["keeps_the_expired_token"]
    assert not verdict
    assert "same expired token" in verdict.message and "never arrived" in verdict.message


def test_checker_counts_attempts_without_waiting_through_the_cut(lab):
    verdict = lab["verdicts"]["never_waits"]
    assert not verdict and "during the network cut" in verdict.message
    attempts = int(verdict.message.split("tried to connect ")[1].split(" times")[0])
    assert attempts > 15


def test_checker_asks_about_the_codes_the_runs_did_not_produce(lab):
    verdict = lab["verdicts"]["gives_up_on_server_errors"]
    assert not verdict
    assert "the lab runs passed" in verdict.message and "1011" in verdict.message


def test_checker_explains_a_wrong_answer_without_running_anything():
    verdict = asyncio.run(check_reaction(lambda code: "backoff" if code else "refresh"))
    assert not verdict and "returned 'backoff'" in verdict.message
    verdict = check_answers(lambda code: {4401: "refresh", 4403: "stop"}[code])
    assert not verdict and "KeyError" in verdict.message and "called with" in verdict.message
    assert check_answers(solution)


# The prompt codes and the experiments ------------------------------------------------------


def test_vague_code_lets_a_revoked_session_deliver_and_better_code_cuts_it_off(lab):
    vague, better = lab["vague"], lab["better"]
    checks = {c.key: c.measure(vague)[0] for c in CRITERIA["token_expiry"]}
    assert checks == {"no loss": True, "no duplicates": True, "in order": True, "on time": True,
                      "revocation enforced": False}
    assert all(c.measure(better)[0] for c in CRITERIA["token_expiry"])
    b = better.summary()
    assert b["reconnects"] == 0 and b["lost"] == 0
    revoked = experiment.revocation(better)
    assert revoked.late == 0 and revoked.refused > 0 and revoked.attempts == 0
    refreshes = [e for e in better.logs if e["event"] == "token refreshed in-band"]
    assert len(refreshes) >= 3 * better.clients


def test_a_strict_server_turns_the_vague_client_into_a_storm_of_refusals(lab):
    strict = lab["strict"]
    s = strict.summary()
    assert s["lost"] > s["sent"] / 2 and s["rejected"] == 0
    assert experiment.attempts_between(strict, 0.6, strict.end_s) > 100
    revoked = experiment.revocation(strict)
    assert revoked.attempts > 20 and revoked.delivered == 0


def test_auth_step_without_refresh_reconnects_at_each_expiry_and_loses_nothing(lab):
    s = lab["no_refresh"].summary()
    assert s["lost"] == 0 and s["reconnects"] >= 2
    assert lab["no_refresh"].metrics.total("wslab_token_refreshes_total") == 0
    assert experiment.revocation(lab["no_refresh"]).late == 0


def test_token_lifetime_bounds_how_long_a_revoked_session_delivers(lab):
    short, long = lab["sweep"][0.3], lab["sweep"][5.0]
    assert short.refreshes_per_client > 3 and long.refreshes_per_client == 0
    assert short.revoked.late == 0 and short.revoked.refused > 0
    assert long.revoked.late > 0 and long.revoked.refused == 0
    assert long.revoked.kept_delivering_s > short.revoked.kept_delivering_s
    assert isinstance(experiment.plot_lifetimes(list(lab["sweep"].values())), Figure)


def test_the_checker_scenarios_produce_the_codes_the_hints_name():
    expiry, revocation = experiment.expiry_scenario(), experiment.revocation_scenario()
    assert expiry.token_ttl_s == 0.5 and [f.kind for f in expiry.faults] == ["cut"]
    assert revocation.token_ttl_s > revocation.planned_s  # no token expires in this run
    assert [f.kind for f in revocation.faults] == ["revoke", "server restart"]
    revoke, restart = revocation.faults
    assert revoke.start_s < restart.start_s and revoke.clients == frozenset({1})


def test_a_hijacked_session_loses_the_victims_messages_unless_sessions_are_bound():
    async def both():
        return await asyncio.gather(experiment.hijack(bound=False), experiment.hijack(bound=True))

    unbound, bound = asyncio.run(both())
    # Off: the attacker is welcomed into the victim's session, learns where it is,
    # supersedes it, and its messages take the victim's numbers: the victim's are lost.
    assert unbound.refused_code is None and unbound.learnt_up_next is not None
    assert unbound.attacker_delivered == experiment.HIJACK_MESSAGES
    assert unbound.victim_lost == experiment.HIJACK_MESSAGES and unbound.superseded >= 1
    # On: closed 4409 before a word about the session; the victim loses nothing.
    assert bound.refused_code == 4409 and bound.learnt_up_next is None
    assert (bound.attacker_frames, bound.attacker_delivered) == (0, 0)
    assert (bound.victim_lost, bound.victim_duplicated, bound.superseded) == (0, 0, 0)
    assert bound.victim_sent == unbound.victim_sent == 100
