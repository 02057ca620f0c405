"""The checkers: pure functions of a run's record (hand-made records, no sockets),
then, through the grader on loopback, scope is not loss and late is not lost."""

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

import wslab
from wslab import checkers
from wslab.checkers import CHECKERS, SCENARIO_CHECKS, Verdict
from wslab.faults import BlackHole, Cut, Revoke, ServerRestart
from wslab.grading import CRITERIA, grade
from wslab.ledger import Ledger
from wslab.run import Run
from wslab.workload import message_id


def record(fates: dict[str, str], *, faults=(), clients: int = 1, planned_end_s: float = 1.0,
           connections=(), tokens_issued: int = 0) -> Run:
    """A run's record by hand: each id produced at 0.1 s per message, with its fate:
    "on time", "late" (delivered at 5 s), "twice", "lost", "refused", "not taken"."""
    ledger = Ledger()
    for i, (msg_id, fate) in enumerate(fates.items()):
        t = i * 0.1
        ledger.produced(msg_id, t)
        if fate == "not taken":
            continue
        ledger.accepted(msg_id, t + 0.01)
        if fate in ("on time", "twice"):
            ledger.delivered(msg_id, t + 0.02)
        if fate == "twice":
            ledger.delivered(msg_id, t + 0.03)
        if fate == "late":
            ledger.delivered(msg_id, 5.0)
        if fate == "refused":
            ledger.rejected(msg_id, t + 0.02, "full")
    return Run(design="handmade", scenario="test", seed=0, clients=clients,
               workload=wslab.Workload(count=len(fates)), faults=wslab.FaultPlan(list(faults)),
               ledger=ledger, end_s=planned_end_s + 30, planned_end_s=planned_end_s,
               connections=list(connections), tokens_issued=tokens_issued)


def test_loss_duplicates_order_and_lateness_are_measured_with_evidence():
    run = record({"u0.0": "on time", "u0.1": "twice", "u0.2": "late", "u0.3": "lost",
                  "u0.4": "refused"})
    assert checkers.no_loss(run) == Verdict(False, "1 of 5 lost, 1 refused explicitly")
    assert checkers.no_duplicates(run) == Verdict(False, "1 duplicate deliveries")
    assert checkers.in_order(run) == Verdict(True, "0 out of order")
    late = checkers.on_time(run)
    assert late.valid is False and late.evidence.startswith("1 late, delivered up to 4.8 s after")


def test_late_is_not_lost():
    run = record({f"u0.{i}": "late" for i in range(3)})
    assert checkers.no_loss(run) == Verdict(True, "0 of 3 lost")
    assert checkers.on_time(run).evidence.startswith("3 late, delivered up to 5.0 s")
    assert run.summary()["late"] == 3 and run.summary()["lost"] == 0
    assert run.summary()["late_s"] == {"p50": 4.9, "max": 5.0}


def test_a_stream_the_design_never_takes_is_out_of_scope_not_lost():
    pushes_only = record({"d0.0": "not taken", "d0.1": "not taken"})
    for name in ("no loss", "no duplicates", "in order", "on time", "bounded"):
        verdict = checkers.check(pushes_only, name)
        assert verdict.valid is None and not verdict.applicable, name
        assert "never takes the server's pushes" in verdict.evidence, name
    both = record({"u0.0": "on time", "d0.0": "not taken", "d0.1": "not taken"})
    assert checkers.no_loss(both) == Verdict(
        True, "0 of 1 lost (2 more not counted: the design never takes the server's pushes "
              "(the server application's app.outgoing() / app.next_message() in the handler))")
    # one push taken, then dropped: the stream is in scope, and that one is lost
    taken = record({"d0.0": "lost", "d0.1": "not taken"})
    assert checkers.no_loss(taken) == Verdict(False, "2 of 2 lost")


def test_bounded_grades_what_the_design_holds_and_shows_what_waits_for_it():
    run = record({**{f"u0.{i}": "lost" for i in range(3)},
                  **{f"u0.{i}": "not taken" for i in range(3, 5)}})
    assert checkers.bounded(run, max_waiting=2) == Verdict(
        False, "peak 3 held by the design; peak 5 waiting in all: 3 in the design, "
               "2 produced and not taken")
    assert checkers.bounded(run, max_waiting=3).valid is True
    s = run.summary()
    assert (s["peak_backlog"], s["peak_backlog_in_design"], s["peak_backlog_not_taken"]) == (5, 3, 2)
    assert s["peak_queue"] == 3


def test_checks_without_their_fault_are_not_applicable_and_say_why():
    run = record({"u0.0": "on time"})
    for name, why in [("came back", "no outage"), ("dead peer noticed", "no black hole"),
                      ("revocation enforced", "no session is revoked"),
                      ("spread out", "no outage")]:
        verdict = checkers.check(run, name)
        assert verdict.valid is None and not verdict.applicable and why in verdict.evidence, name
    assert checkers.in_order(run).evidence == (
        "not applicable: no sender had two messages processed: no order to keep")


def test_revocation_needs_a_design_that_uses_tokens():
    fates = {f"u1.{i}": "on time" for i in range(12)}  # produced up to 1.1 s, all delivered
    revoked = [Revoke(start_s=0.25, clients=frozenset({1}))]
    without = record(fates, faults=revoked, clients=2)
    assert "does not use the lab's tokens" in checkers.revocation_enforced(without).evidence
    using = record(fates, faults=revoked, clients=2, tokens_issued=2)
    assert checkers.revocation_enforced(using) == Verdict(
        False, "4 message(s) of a revoked session delivered")  # 0.8 to 1.1 s: past the grace


def test_dead_peer_unknown_when_the_lab_cannot_see_the_clients_connections():
    hole = [BlackHole(start_s=0.5, duration_s=0.5)]
    unseen = record({"u0.0": "on time"}, faults=hole, connections=[(0.0, 0, "open")])
    verdict = checkers.dead_peer_noticed(unseen)
    assert verdict.valid is None and verdict.applicable and verdict.evidence.startswith("unknown")


def test_bursts_are_peaks_in_a_sliding_window():
    # 200 clients; at the restart (1 s) 100 attempts within 9 ms straddling a bucket
    # edge, then the rest spread 1 ms apart
    attempts = [(0.0, c, "accept") for c in range(200)]  # the first connections: before the outage
    attempts += [(1.0055 + k * 0.00009, k, "accept") for k in range(100)]
    attempts += [(1.1 + k * 0.001, k, "accept") for k in range(100)]
    run = record({"u0.0": "on time"}, clients=200, connections=attempts,
                 faults=[ServerRestart(start_s=1.0, duration_s=0.1)])
    assert checkers.peak_attempts(run, 0.01, 1.0) == 100
    assert run.attempts_per_bucket(0.01, 1.0)[:2] == [50, 50]  # buckets would halve it
    assert checkers.spread_out(run) == Verdict(True, "peak 100 attempts in 10 ms (0.50 per client)")
    assert checkers.spread_out(run, max_share=0.4).valid is False


def test_every_scenario_checks_loss_duplicates_order_and_lateness():
    assert set(SCENARIO_CHECKS) == set(wslab.SCENARIOS) == set(CRITERIA)
    for scenario, uses in SCENARIO_CHECKS.items():
        names = [name for name, _, _ in uses]
        assert names[:4] == ["no loss", "no duplicates", "in order", "on time"], scenario
        assert len(names) > 4 or scenario == "lost_acknowledgements", scenario
        assert all(name in CHECKERS for name in names)
        for name, teacher, _ in uses:
            assert wslab.course.lesson(teacher)


def test_graded_runs_settle_past_their_planned_end_and_real_time_settles_less():
    from wslab.grading import GRADING_HORIZON_REAL_S, GRADING_HORIZON_S, _settling

    base = wslab.SCENARIOS["idle_black_hole"]
    graded = _settling(base)
    assert base.horizon_s == 0 and base.horizon_end_s == base.planned_s  # a lesson's run
    assert graded.horizon_end_s == base.planned_s + GRADING_HORIZON_S
    assert graded.time_limit_s > graded.horizon_end_s  # the hard limit leaves room for it
    assert _settling(base.with_(clock="real")).horizon_s == GRADING_HORIZON_REAL_S < GRADING_HORIZON_S
    with pytest.raises(wslab.ConfigError, match="horizon_s"):
        base.with_(horizon_s=-1)


# Through the lab and the grader ------------------------------------------------------


async def _server_that_never_pushes(websocket, app):
    async for message in websocket:
        await app.process(message)


async def _client_that_sends(app):
    async with app.connect() as websocket:
        async for message in app.outgoing():
            await websocket.send(message)
        await asyncio.Future()  # stay connected until the lab stops the client


@pytest.mark.timeout(60)
def test_a_server_that_never_pushes_is_not_charged_with_loss():
    no_push = wslab.Design("no push", handler=_server_that_never_pushes,
                           client=_client_that_sends)
    card = grade(no_push, scenarios=["slow_consumer"], progress=False)
    row = card["slow_consumer"]
    assert row.run.summary()["lost"] == 500  # the record keeps the plain count...
    assert row.passed and row.applicable == []  # ...the grade says it is out of scope
    assert all("never takes the server's pushes" in c.measured for c in row.checks)
    assert "n/a" in card.text() and "not applicable" in card._repr_html_()
    checks = json.loads(json.dumps(card.to_json()))["scenarios"][0]["checks"]
    assert {c["status"] for c in checks} == {"n/a"} and not any(c["applicable"] for c in checks)
    assert card.score() == (0, 0, 5)


async def _acking_handler(websocket, app):
    async for message in websocket:
        await app.process(message)
        await websocket.send(json.dumps({"ack": message_id(message)}))


async def _client_with_default_close_timeout(app):
    """Keeps every message until acknowledged and resends after reconnecting;
    notices a dead peer through tight pings, then waits websockets' default
    close_timeout (10 s) for the close handshake before connecting again."""
    unacked: dict[str, str] = {}
    source = aiter(app.outgoing())
    while True:
        try:
            async with app.connect(ping_interval=0.2, ping_timeout=0.2) as websocket:
                for message in list(unacked.values()):
                    await websocket.send(message)

                async def read_acks():
                    async for reply in websocket:
                        unacked.pop(json.loads(reply)["ack"], None)

                reader = asyncio.ensure_future(read_acks())
                try:
                    async for message in source:
                        unacked[message_id(message)] = message
                        await websocket.send(message)
                    await reader
                finally:
                    reader.cancel()
        except (OSError, ConnectionClosed):
            await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
def test_a_design_that_delivers_everything_ten_seconds_late_is_late_not_lost():
    patient = wslab.Design("patient", handler=_acking_handler,
                           client=_client_with_default_close_timeout)
    row = grade(patient, scenarios=["idle_black_hole"], progress=False)["idle_black_hole"]
    verdicts = {c.criterion.key: c for c in row.checks}
    s = row.run.summary()
    assert s["lost"] == 0 and s["late"] >= 70 and 10.0 < s["late_s"]["max"] < 12.0, s
    assert verdicts["no loss"].passed is True
    assert verdicts["on time"].passed is False
    assert verdicts["on time"].measured.startswith(f"{s['late']} late, delivered up to "
                                                   f"{s['late_s']['max']:.1f} s after production")
    assert verdicts["came back"].passed is True
    # without the grader's horizon the same run ends at its planned end, messages in flight
    plain = wslab.run(patient, "idle_black_hole")
    assert plain.summary()["lost"] >= 70 and plain.end_s < 4


@pytest.mark.timeout(180)
def test_the_storm_check_tells_full_jitter_from_retries_in_lockstep():
    from dataclasses import replace

    from wslab.designs.production import DEFAULT, design

    lockstep = design("no jitter", replace(DEFAULT, backoff_jitter="none"))
    shares = {}
    for name, candidate in [("production", "production"), ("no jitter", lockstep),
                            ("library_reconnect", "library_reconnect")]:
        run = wslab.run(candidate, "reconnect_storm")
        verdict = checkers.spread_out(run)
        shares[name] = checkers.peak_attempts(run, 0.01, 0.8) / run.clients
        assert verdict.valid is (name == "production"), (name, verdict)
    # full jitter from [0, 50 ms]: about 0.3; every client in one window: 1 or more
    assert shares["production"] < 0.4 and shares["no jitter"] == 1.0
    assert shares["library_reconnect"] > 1.0  # an immediate retry, then the failed ones again
