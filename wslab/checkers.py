"""Checkers: pure functions from a run's record to a verdict, composed by name per scenario.

In the style of Maelstrom's checkers: each reads the :class:`~wslab.run.Run`
(its ledger, the connections the proxy saw, the faults it was given) and
returns a :class:`Verdict`, never doing I/O or reading a clock:

- ``valid`` True (holds), False (does not hold), or None: not applicable (the
  scenario or the design gives it nothing to judge) or unknown (the record
  cannot tell); ``evidence`` says which, with the measured figure, and
  ``applicable`` tells the two kinds of None apart. A run whose event loop
  lagged past its keepalive's timeout (``Run.overloaded``) cannot tell a slow
  design from a slow lab: there a timing checker (``Checker.timing``) that
  would fail answers unknown instead (:func:`check`).

:data:`CHECKERS` names every checker with the requirement it states;
:data:`SCENARIO_CHECKS` says which ones each standard scenario uses, with
their parameters and the lesson that teaches the fix. Every scenario checks
loss, duplicates, order and lateness, then its own properties.

**Scope is not loss.** A message stream (the clients' messages up, the
server's pushes down) that the design never took from the application at all
is out of the design's scope: its messages are not counted as lost, late or
waiting, and a check with nothing left to judge is not applicable. The record
says so exactly: the ledger knows whether any message of a stream was ever
taken (``app.outgoing()`` / ``app.next_message()``) or processed. Likewise a
design that never asked the lab's identity provider for a token, nor had one
verified, has no session to revoke.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .faults import BlackHole, Revoke
from .run import Run
from .workload import split_id


class Verdict(NamedTuple):
    """A checker's answer: ``valid`` True / False / None, and the evidence."""

    valid: bool | None
    evidence: str
    applicable: bool = True  # False: "not applicable" (valid is None then)


def not_applicable(why: str) -> Verdict:
    return Verdict(None, f"not applicable: {why}", applicable=False)


def unknown(why: str) -> Verdict:
    return Verdict(None, f"unknown: {why}")


# Thresholds ---------------------------------------------------------------------

# A design that bounds its queues holds at most this many messages produced and not
# yet processed while the producer outruns the consumer fourfold; an unbounded one
# holds the whole backlog (about 380 in the overload scenarios).
MAX_QUEUE = 256
# A dead peer must be noticed (the connection closed on the client's side)
# within this long after a black hole opens.
MAX_DETECTION_S = 2.0
# Connection attempts per client through the reconnect storm (the first connection
# and the one that succeeds included): exponential backoff makes 4-5.2 through the
# 0.4 s restart (measured), a fixed 50 ms retry about 9.
MAX_ATTEMPTS_PER_CLIENT = 6.0
# Burstiness of a storm: connection attempts in any BURST_WINDOW_S of lab time,
# over the number of clients, from the outage on. Clients that retry on the same
# schedule (no jitter: a fixed delay, exponential backoff without jitter, or an
# immediate retry when the server goes away) all land in one window: 1.0. Full
# jitter spreads the first retry uniformly over [0, base]; for 200 clients and the
# smallest base in common use (50 ms) a 10 ms window holds 200 * 10/50 = 40 on
# average (0.2), and its peak, a binomial tail over a few windows, stays near 0.3.
# Half the clients in one window lies between the two with margin on both sides.
BURST_WINDOW_S = 0.01
MAX_BURST_SHARE = 0.5
# A revoked client's messages produced this long after the revocation must not
# be delivered (time for the server to notice the token).
REVOKE_GRACE_S = 0.5


# Scope ----------------------------------------------------------------------------

_STREAMS = {"u": "the clients' messages up (the client application's app.outgoing())",
            "d": "the server's pushes (the server application's app.outgoing() / "
                 "app.next_message() in the handler)",
            "e": "the echo replies"}


def _stream(msg_id: str) -> str:
    parts = split_id(msg_id)
    return parts[0][0] if parts is not None else "?"


def _scope(run: Run) -> tuple[set[str], list[str]]:
    """The streams the design takes part in (it took or processed a message of
    theirs), and the reasons for the produced streams it never touched."""
    produced: set[str] = set()
    touched: set[str] = set()
    for record in run.ledger.records.values():
        stream = _stream(record.msg_id)
        produced.add(stream)
        if record.accepted_s is not None or record.deliveries:
            touched.add(stream)
    left_out = [f"the design never takes {_STREAMS.get(s, 'stream ' + s)}"
                for s in sorted(produced - touched)]
    return touched, left_out


def _records_in_scope(run: Run) -> tuple[list[Any], str | None]:
    """The ledger records of the streams in scope, and why there are none (or a note
    on the streams left out), or None."""
    touched, left_out = _scope(run)
    records = [r for r in run.ledger.records.values() if _stream(r.msg_id) in touched]
    if not run.ledger.records:
        return [], "no message was produced"
    if not records:
        return [], "; ".join(left_out)
    return records, ("; ".join(left_out) if left_out else None)


def _not_counted(records: list[Any], run: Run, note: str | None) -> str:
    left = len(run.ledger.records) - len(records)
    return f" ({left} more not counted: {note})" if note and left else ""


# The checkers ---------------------------------------------------------------------


def no_loss(run: Run) -> Verdict:
    """Every message of the streams in scope delivered or explicitly refused by
    the end of the run (its horizon: late is not lost)."""
    records, note = _records_in_scope(run)
    if not records:
        return not_applicable(note or "no message")
    lost = sum(1 for r in records if not r.deliveries and r.rejected_s is None)
    refused = sum(1 for r in records if not r.deliveries and r.rejected_s is not None)
    evidence = f"{lost} of {len(records)} lost" + (f", {refused} refused explicitly" if refused else "")
    return Verdict(lost == 0, evidence + _not_counted(records, run, note))


def no_duplicates(run: Run) -> Verdict:
    """Each message processed at most once."""
    records, note = _records_in_scope(run)
    if not records:
        return not_applicable(note or "no message")
    extra = sum(max(0, len(r.deliveries) - 1) for r in records)
    return Verdict(extra == 0, f"{extra} duplicate deliveries")


def in_order(run: Run) -> Verdict:
    """Each sender's messages first processed in the order it produced them."""
    records, note = _records_in_scope(run)
    delivered: dict[str, int] = {}
    for r in records:
        if r.deliveries:
            source = split_id(r.msg_id)
            if source is not None:
                delivered[source[0]] = delivered.get(source[0], 0) + 1
    if not any(n > 1 for n in delivered.values()):
        return not_applicable(note or "no sender had two messages processed: no order to keep")
    touched, _ = _scope(run)
    late = [m for m in run.ledger.out_of_order_ids() if _stream(m) in touched]
    return Verdict(not late, f"{len(late)} out of order")


def on_time(run: Run) -> Verdict:
    """Nothing of the streams in scope first delivered after the run's planned
    end (its settle window); the evidence gives how late the latest was."""
    records, note = _records_in_scope(run)
    if not records:
        return not_applicable(note or "no message")
    delays = sorted(r.deliveries[0] - r.produced_s for r in records
                    if r.deliveries and r.deliveries[0] > run.planned_end_s)
    if not delays:
        return Verdict(True, "nothing late")
    return Verdict(False, f"{len(delays)} late, delivered up to {delays[-1]:.1f} s after "
                          f"production (after the planned end at {run.planned_end_s:.2f} s)")


def came_back(run: Run) -> Verdict:
    """Every client connected before the outage connected again after it."""
    r = run.recovery_s
    if r is None:
        return not_applicable("no outage, or no client connected before it")
    if isinstance(r, float) and math.isnan(r):
        return Verdict(False, "a client never came back")
    return Verdict(True, f"back {r:.2f} s after the outage")


def bounded(run: Run, *, max_waiting: int = MAX_QUEUE) -> Verdict:
    """At most ``max_waiting`` messages at once held by the design: taken from the
    application and not yet processed (in its queues, buffers, the network).

    The evidence also gives the peak of all that waited for processing, the
    messages produced and not yet taken included: what a design that pulls its
    messages leaves in the application's producer queue. That part is shown,
    not bounded: a design applying backpressure makes the producer wait, and in
    the lab (whose producers keep their schedule) the producer's wait is that
    queue."""
    records, note = _records_in_scope(run)
    if not records:
        return not_applicable(note or "no message")
    touched, _ = _scope(run)
    in_scope = lambda msg_id: _stream(msg_id) in touched  # noqa: E731
    held_peak = max(run.ledger.queue_series(in_scope)[1])
    held, not_taken = run.ledger.backlog_peak(in_scope)
    return Verdict(held_peak <= max_waiting,
                   f"peak {held_peak} held by the design; peak {held + not_taken} waiting "
                   f"in all: {held} in the design, {not_taken} produced and not taken")


def dead_peer_noticed(run: Run, *, within_s: float = MAX_DETECTION_S) -> Verdict:
    """Every client connection open when a black hole opened was closed by the
    client within ``within_s``."""
    if not run.faults.of(BlackHole):
        return not_applicable("no black hole in this scenario")
    d = run.detection_s
    if d is None:
        start = min(f.start_s for f in run.faults.of(BlackHole))
        if any(t < start for t, _, _ in run.client_events):
            return not_applicable("no client had a connection open when the black hole began")
        if any(t < start and event == "open" for t, _, event in run.connections):
            return unknown("the clients' connections were not opened with app.connect(), so "
                           "the lab cannot see when a client closes one")
        return not_applicable("no client had a connection open when the black hole began")
    if isinstance(d, float) and math.isnan(d):
        return Verdict(False, "the dead connection was still open (or closing) when the run ended")
    return Verdict(d <= within_s, f"noticed after {d:.2f} s")


def no_false_alarm(run: Run) -> Verdict:
    """No connection dropped and made again while the network was slow but alive."""
    n = run.reconnects
    return Verdict(n == 0, f"{n} reconnection(s)")


def nothing_left_running(run: Run) -> Verdict:
    """No task of the design's outlived its client and server."""
    return Verdict(run.tasks_left == 0, f"{run.tasks_left} task(s) left running")


def revocation_enforced(run: Run, *, grace_s: float = REVOKE_GRACE_S) -> Verdict:
    """No message of a revoked client produced more than ``grace_s`` after the
    revocation was delivered."""
    revokes = run.faults.of(Revoke)
    if not revokes:
        return not_applicable("no session is revoked in this scenario")
    if not run.tokens_issued and not run.tokens_verified:
        return not_applicable("the design does not use the lab's tokens (app.fetch_token(), "
                              "app.verify_token()), so it has no session to revoke")
    late = 0
    for fault in revokes:
        for record in run.ledger.records.values():
            client = _client_of(record.msg_id)
            revoked = fault.clients is None or client in fault.clients
            if revoked and record.produced_s > fault.start_s + grace_s and record.deliveries:
                late += 1
    return Verdict(late == 0, f"{late} message(s) of a revoked session delivered")


def backs_off(run: Run, *, max_attempts_per_client: float = MAX_ATTEMPTS_PER_CLIENT) -> Verdict:
    """At most ``max_attempts_per_client`` connection attempts per client in the run."""
    per_client = run.connect_attempts / run.clients
    return Verdict(per_client <= max_attempts_per_client,
                   f"{per_client:.1f} connection attempts per client")


def peak_attempts(run: Run, window_s: float, after_s: float) -> int:
    """The most connection attempts (accepted by the proxy) in any ``window_s``
    of lab time from ``after_s`` on: a sliding window, not fixed buckets."""
    times = sorted(t for t, _, event in run.connections if event == "accept" and t >= after_s)
    peak, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window_s:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def spread_out(run: Run, *, window_s: float = BURST_WINDOW_S,
               max_share: float = MAX_BURST_SHARE) -> Verdict:
    """From the first outage on, at most ``max_share`` of the clients attempt a
    connection within any ``window_s`` (see :data:`MAX_BURST_SHARE`)."""
    outages = run.faults.outages()
    if not outages:
        return not_applicable("no outage in this scenario")
    peak = peak_attempts(run, window_s, min(f.start_s for f in outages))
    share = peak / run.clients
    return Verdict(share <= max_share, f"peak {peak} attempts in {window_s * 1000:g} ms "
                                       f"({share:.2f} per client)")


def _client_of(msg_id: str) -> int | None:
    parts = split_id(msg_id)
    return int(parts[0][1:]) if parts is not None and parts[0][1:].isdigit() else None


# The tables -----------------------------------------------------------------------


@dataclass(frozen=True)
class Checker:
    """A named checker: the function, and the requirement it states (formatted
    with the parameters a scenario gives it)."""

    name: str
    check: Callable[..., Verdict]
    requires: str
    # Its verdict depends on when things happened (a delivery in time, a reconnection,
    # a keepalive): in an overloaded run (Run.overloaded) its failure is "unknown".
    timing: bool = False


CHECKERS: dict[str, Checker] = {c.name: c for c in [
    Checker("no loss", no_loss,
            "every message delivered or explicitly refused by the end of the run", timing=True),
    Checker("no duplicates", no_duplicates, "each message processed once"),
    Checker("in order", in_order, "each sender's messages processed in order"),
    Checker("on time", on_time, "every message delivered by the planned end of the run", timing=True),
    Checker("came back", came_back, "every client reconnects after the outage", timing=True),
    Checker("bounded", bounded, "at most {max_waiting} messages accepted and not yet processed "
            "(the producer waits or is refused)"),
    Checker("dead peer noticed", dead_peer_noticed,
            "a silently dead connection closed within {within_s:g} s", timing=True),
    Checker("no false alarm", no_false_alarm, "a slow but live connection is not dropped", timing=True),
    Checker("nothing left running", nothing_left_running,
            "no task outlives the design's client and server"),
    Checker("revocation enforced", revocation_enforced,
            "a revoked session's later messages are refused", timing=True),
    Checker("backs off", backs_off,
            "at most {max_attempts_per_client:g} connection attempts per client through the restart", timing=True),
    Checker("spread out", spread_out, "at most {max_share:g} of the clients attempt a connection "
            "in any {window_s_ms:g} ms after the outage", timing=True),
]}


def _common(loss_lesson: str) -> list[tuple[str, str, dict[str, Any]]]:
    """What every scenario checks: loss, duplicates, order, lateness."""
    return [("no loss", loss_lesson, {}), ("no duplicates", "10", {}), ("in order", "10", {}),
            ("on time", loss_lesson, {})]


# Scenario name -> (checker name, lesson that teaches the fix, parameters), in order.
SCENARIO_CHECKS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "network_interruption": [*_common("04"), ("came back", "03", {})],
    "server_restart": [*_common("04"), ("came back", "03", {})],
    "slow_consumer": [*_common("05"), ("bounded", "05", {})],
    "queue_overflow": [*_common("05"), ("bounded", "05", {})],
    "idle_black_hole": [*_common("06"), ("dead peer noticed", "06", {}), ("came back", "03", {})],
    "latency_spike": [*_common("04"), ("no false alarm", "06", {})],
    "lost_acknowledgements": _common("04"),
    "shutdown_in_flight": [*_common("08"), ("came back", "03", {}),
                           ("nothing left running", "08", {})],
    "token_expiry": [*_common("09"), ("revocation enforced", "09", {})],
    "reconnect_storm": [*_common("04"), ("came back", "03", {}), ("backs off", "03", {}),
                        ("spread out", "03", {})],
}


def requirement(name: str, params: dict[str, Any]) -> str:
    """The requirement of checker ``name`` with ``params`` (its defaults filled in)."""
    checker = CHECKERS[name]
    values = {p.name: p.default for p in inspect.signature(checker.check).parameters.values()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}
    values.update(params)
    if "window_s" in values:
        values["window_s_ms"] = values["window_s"] * 1000
    return checker.requires.format(**values)


def check(run: Run, name: str, **params: Any) -> Verdict:
    """Checker ``name`` (see :data:`CHECKERS`) applied to ``run``.

    In a run whose event loop lagged past the keepalive's timeout
    (:attr:`Run.overloaded <wslab.run.Run.overloaded>`), a timing checker's
    failure is "unknown: the lab was overloaded", with the failure's evidence:
    the lab, not the design, may have made it late or dropped it. A timing
    check that holds despite the overload still passes."""
    checker = CHECKERS[name]
    verdict = checker.check(run, **params)
    if verdict.valid is False and checker.timing and (why := run.overloaded) is not None:
        return unknown(f"{why} (measured: {verdict.evidence})")
    return verdict
