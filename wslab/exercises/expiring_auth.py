"""Lesson 09's exercise: how a client reacts when the server closes its connection.

The learner writes ``reaction(close_code)``: what the client does when its
connection ends with ``close_code`` (an int, or None when it failed before
any close frame, as when a handshake is refused or reset). One of:

- ``"refresh"``: get a new token, reconnect at once (4401: the token is
  missing, invalid or expired; that is not a failure to back off from);
- ``"stop"``: stop for good and refuse every queued message (4403: the
  session was revoked; retrying cannot help and only loads the server);
- ``"back off"``: wait a jittered, growing delay, then reconnect (anything
  else: the network, a restart, an overloaded server).

:func:`check_reaction` runs it for real, in the production client
(:class:`wslab.experiments.expiring_auth.ReactingClient`) against the
production server, in two labs at once: tokens that expire every 0.5 s plus a
network cut, and a revoked session plus a server restart. Every hint names the
client, the moment, the close code, what the function answered and what it
cost (messages refused or undelivered, connections refused). Then it asks the
function about the close codes the runs did not produce.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .checking import Verdict, call_safely

Reaction = Callable[[object], str]

ACTIONS = ("refresh", "back off", "stop")
UNAUTHORIZED, FORBIDDEN = 4401, 4403
# Close codes the runs do not produce, and what they mean: all of them call for "back off".
OTHER_CODES: dict[int | None, str] = {
    None: "None (no close frame: the connection failed or was refused)",
    1000: "1000, a normal closure by the server",
    1001: "1001, the server going away",
    1006: "1006, the connection dropped without a close frame",
    1011: "1011, an error in the server",
    1012: "1012, the server restarting",
    1013: "1013, the server overloaded: try again later",
    4001: "4001, another connection of the same session superseded this one",
}
# A client that backs off makes a handful of attempts per client through a
# 0.2 s cut (measured: 3-4); one that does not wait makes hundreds.
MAX_ATTEMPTS_IN_OUTAGE = 15


def _code(code: object) -> str:
    if code is None:
        return "no close code (the connection failed before a close frame)"
    if code in OTHER_CODES:
        return f"close code {OTHER_CODES[code]}"
    return f"close code {int(code)}"  # type: ignore[call-overload]


def _expected(code: object) -> str:
    return {UNAUTHORIZED: "refresh", FORBIDDEN: "stop"}.get(code, "back off")  # type: ignore[call-overload]


def check_answers(reaction: Reaction) -> Verdict:
    """Call ``reaction`` for 4401, 4403 and every code of :data:`OTHER_CODES`:
    each answer must be one of :data:`ACTIONS` (this checks the shape only)."""
    for code in (UNAUTHORIZED, FORBIDDEN, *OTHER_CODES):
        answer, error = call_safely(reaction, code)
        if error:
            return Verdict(False, f"called with {code!r}: {error}")
        if answer not in ACTIONS:
            return Verdict(False, (
                f"called with {code!r} your function returned {answer!r}; return one of "
                f"{', '.join(repr(a) for a in ACTIONS)}"))
    return Verdict(True, "every answer is one of " + ", ".join(repr(a) for a in ACTIONS))


async def check_reaction(reaction: Reaction) -> Verdict:
    """Check the answers' shape, run ``reaction`` in the lab (both scenarios of
    :mod:`wslab.experiments.expiring_auth` at once), explain what went wrong
    with the evidence of the runs, then check the codes the runs did not produce."""
    from ..experiments import expiring_auth as experiment
    from ..lab import arun

    shape = check_answers(reaction)
    if not shape:
        return shape
    expiry_design, expiry_journal = experiment.reaction_design(reaction)
    revoke_design, revoke_journal = experiment.reaction_design(reaction)
    expiry, revoked = await asyncio.gather(arun(expiry_design, experiment.expiry_scenario()),
                                           arun(revoke_design, experiment.revocation_scenario()))
    for run in (expiry, revoked):
        if run.errors:
            first = run.errors[0]
            return Verdict(False, f"in the run '{run.scenario}', {first.where} failed at "
                                  f"{first.t_s:.2f} s: {first.error}")
    hint = (_expiry_hint(expiry, expiry_journal, experiment)
            or _revocation_hint(revoked, revoke_journal, experiment))
    if hint:
        return Verdict(False, hint)
    for code, meaning in OTHER_CODES.items():
        answer, _ = call_safely(reaction, code)
        if answer != "back off":
            return Verdict(False, (
                f"the lab runs passed, but for close code {meaning}, your function answers "
                f"{answer!r}. Only 4401 (refresh) and 4403 (stop) are about the token; "
                "after any other close the next connection may well work: back off"))
    return Verdict(True, _summary(expiry, expiry_journal, revoked, revoke_journal, experiment))


def _refused(run, client: int) -> int:
    return sum(1 for r in run.ledger.records.values()
               if r.msg_id.startswith(f"u{client}.") and r.rejected_s is not None
               and not r.deliveries)


def _undelivered(run, client: int) -> int:
    return sum(1 for r in run.ledger.records.values()
               if r.msg_id.startswith(f"u{client}.") and not r.deliveries)


def _expiry_hint(run, journal, experiment) -> str | None:
    for t, client, code, action in journal.entries:
        if code != UNAUTHORIZED or action == "refresh":
            continue
        if action == "stop":
            return (f"client {client}'s token expired and the server closed its connection with "
                    f"4401 at {t:.2f} s; your function answered 'stop', so the client gave up a "
                    f"session nobody had revoked: {_refused(run, client)} of its messages were "
                    "refused. 4401 means: get a new token and come back at once ('refresh')")
        again = journal.count(client=client, code=UNAUTHORIZED, after_s=t) - 1
        return (f"client {client}'s token expired and the server closed its connection with "
                f"4401 at {t:.2f} s; your function answered {action!r}, so the client came back "
                f"with the same expired token: refused with 4401 {again} more time(s), and "
                f"{_undelivered(run, client)} of its messages never arrived. A new token is "
                "what 4401 asks for ('refresh')")
    end = experiment.CUT_START_S + experiment.CUT_S
    for t, client, code, action in journal.entries:
        if code == UNAUTHORIZED or not experiment.CUT_START_S <= t < end + 0.05:
            continue
        if action == "stop":
            return (f"the network cut client {client}'s connection at {t:.2f} s "
                    f"({_code(code)}); your function answered 'stop', so {_refused(run, client)} "
                    f"of its messages were refused, though the network came back at {end:g} s. "
                    "Only 4403 means stop: back off otherwise")
    for client in range(run.clients):
        attempts = experiment.attempts_between(run, experiment.CUT_START_S, end, client)
        if attempts > MAX_ATTEMPTS_IN_OUTAGE:
            answered = sorted({repr(a) for at, c, k, a in journal.entries
                               if c == client and k != UNAUTHORIZED
                               and experiment.CUT_START_S <= at < end})
            return (f"during the network cut ({experiment.CUT_START_S:g}–{end:g} s) client "
                    f"{client} tried to connect {attempts} times (your function answered "
                    f"{' and '.join(answered)} for a connection that failed, with no close code "
                    "or 1006): every attempt without waiting. Back off: a jittered, growing "
                    "delay lets the network (or the server) recover")
    lost = run.summary()["lost"]
    if lost:
        return f"in the run '{run.scenario}', {lost} messages were lost"
    return None


def _revocation_hint(run, journal, experiment) -> str | None:
    revoked_at = experiment.REVOKE_AT_S
    forbidden = [(t, client, action) for t, client, code, action in journal.entries
                 if code == FORBIDDEN]
    for t, client, action in forbidden:
        if action == "stop":
            continue
        if action == "refresh":
            return (f"client {client} was revoked at {revoked_at:g} s; when it came back after "
                    f"the server restart, the server refused it with 4403 at {t:.2f} s and your "
                    "function answered 'refresh': the client asked the identity provider for a "
                    "new token, and was refused (TokenRevoked). Here that ended it; a provider "
                    "that still issued tokens would have been asked again and again. 4403 "
                    "means: stop ('stop')")
        refusals = len(forbidden)
        return (f"client {client} was revoked at {revoked_at:g} s; after the server restart it "
                f"was refused with 4403 {refusals} times (first at {t:.2f} s), because your "
                "function answered 'back off' and it kept coming back with a revoked token. "
                "Thousands of revoked clients doing that are a reconnect storm of refusals. "
                "4403 means: stop ('stop')")
    start, end = experiment.RESTART_START_S, experiment.RESTART_START_S + experiment.RESTART_S
    for t, client, code, action in journal.entries:
        if action == "stop" and code != FORBIDDEN:
            return (f"client {client} stopped at {t:.2f} s on {_code(code)} (the server was "
                    f"restarting, back at {end:g} s): {_refused(run, client)} of its messages "
                    "were refused. Only 4403 means stop: back off otherwise")
    for client in range(run.clients):
        attempts = experiment.attempts_between(run, start, end, client)
        if attempts > MAX_ATTEMPTS_IN_OUTAGE:
            return (f"while the server restarted ({start:g}–{end:g} s), client {client} tried "
                    f"to connect {attempts} times: your function answered 'refresh' for 1012 "
                    "or for a refused connection, so it never waited. Back off")
    if not forbidden and journal.count(client=1, action="provider refused") == 0:
        return ("client 1 was revoked and the runs never saw it refused: did the client "
                "stop on something else first?")
    s = run.summary()
    if s["lost"]:
        return f"in the run '{run.scenario}', {s['lost']} messages were lost"
    late = experiment.revocation(run).late
    if late:
        return f"{late} messages of the revoked client were delivered after its revocation"
    return None


def _summary(expiry, expiry_journal, revoked, revoke_journal, experiment) -> str:
    refreshed = expiry_journal.count(code=UNAUTHORIZED, action="refresh")
    end = experiment.CUT_START_S + experiment.CUT_S
    in_cut = experiment.attempts_between(expiry, experiment.CUT_START_S, end)
    gone = experiment.revocation(revoked)
    refusals = revoke_journal.count(code=FORBIDDEN)
    return (f"in the lab: after each expiry (4401, {refreshed} times) a new token and straight "
            f"back; through the 0.2 s network cut, backing off ({in_cut} attempts for "
            f"{expiry.clients} clients); revoked client 1 refused once with 4403 ({refusals} "
            f"refusal{'s' if refusals != 1 else ''}) and stopped, its {gone.refused} later "
            "messages refused explicitly; nothing lost in either run. Every other close code: "
            "back off")
