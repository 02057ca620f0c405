"""Lesson 11's exercise: how long was each client away, from the logs alone.

The learner writes ``outages(log_entries)``: given a run's structured log
(dicts with ``t``, ``side``, ``client``, ``event``..., in time order), it
returns, per client, every interval the client spent without a connection::

    {0: [(0.40, 0.92), (1.10, 1.78)], 1: [(1.10, 1.52)], 2: [(1.10, 1.44)]}

An outage starts at the client's ``disconnected`` event and ends at the same
client's next ``connected`` event (``None`` when none came); ``connect
failed`` events in between are part of it, and the server's events describe
the server's side of things, not the client's.

:func:`check_outages` checks it in two stages and answers with a
:class:`~wslab.exercises.checking.Verdict`:

1. **a scripted log** (:func:`check_outages_offline`) that holds every case at
   once: interleaved clients, failed attempts, server-side events, a client
   that drops twice, one that never comes back. The first interval that
   disagrees is the hint, with the events that decide it;
2. **a real chaos run** (:func:`wslab.experiments.observability.chaos`, the
   production design): the learner's answer, from the run's logs, against the
   lab's own record of every connection (:func:`recorded_outages`), to
   :data:`~wslab.experiments.observability.TOLERANCE_S`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..experiments.observability import TOLERANCE_S, chaos, recorded_outages
from .checking import Verdict, call_safely

Outages = dict[int, list[tuple[float, "float | None"]]]


def _entry(t: float, side: str, client: int, event: str, **fields: Any) -> dict:
    return {"t": t, "level": "info", "logger": "wslab.production", "event": event,
            "side": side, "client": client, **fields}


# Every case at once: client 0 drops twice and fails to reconnect in between;
# client 1 drops in the restart; client 2 drops at the end and never comes back;
# the server logs its own view of each connection around the same moments.
SCRIPT: list[dict] = [
    _entry(0.01, "server", 0, "session opened"),
    _entry(0.01, "client", 0, "connected", attempt=0),
    _entry(0.01, "server", 1, "session opened"),
    _entry(0.01, "client", 1, "connected", attempt=0),
    _entry(0.02, "server", 2, "session opened"),
    _entry(0.02, "client", 2, "connected", attempt=0),
    _entry(0.40, "server", 0, "disconnected", reason="closed with code 1006"),
    _entry(0.40, "client", 0, "disconnected", reason="closed with code 1006"),
    _entry(0.45, "client", 0, "connect failed", error="InvalidMessage"),
    _entry(0.60, "client", 0, "connect failed", error="InvalidMessage"),
    _entry(0.72, "server", 0, "session resumed"),
    _entry(0.72, "client", 0, "connected", attempt=3),
    _entry(1.00, "server", 0, "disconnected", reason="closed with code 1012"),
    _entry(1.00, "server", 1, "disconnected", reason="closed with code 1012"),
    _entry(1.00, "client", 0, "disconnected", reason="closed with code 1012"),
    _entry(1.00, "client", 1, "disconnected", reason="closed with code 1012"),
    _entry(1.05, "client", 1, "connect failed", error="InvalidMessage"),
    _entry(1.31, "server", 1, "session resumed"),
    _entry(1.31, "client", 1, "connected", attempt=2),
    _entry(1.40, "server", 0, "session resumed"),
    _entry(1.40, "client", 0, "connected", attempt=1),
    _entry(1.60, "server", 2, "disconnected", reason="closed with code 1006"),
    _entry(1.60, "client", 2, "disconnected", reason="closed with code 1006"),
    _entry(1.65, "client", 2, "connect failed", error="InvalidMessage"),
]
SCRIPT_ANSWER: Outages = {0: [(0.40, 0.72), (1.00, 1.40)], 1: [(1.00, 1.31)], 2: [(1.60, None)]}


class _Problem(Exception):
    """What the learner's answer got wrong, in words."""


def _fmt(t: float | None) -> str:
    return "never (no connected came)" if t is None else f"{t:.2f} s"


def _normalise(got: Any) -> Outages:
    if not isinstance(got, Mapping):
        raise _Problem(f"outages() must return a dict {{client: [(start_s, end_s), ...]}}; "
                       f"it returned {type(got).__name__} {str(got)[:80]!r}")
    out: Outages = {}
    for client, spans in got.items():
        try:
            items = list(spans)
        except TypeError:
            raise _Problem(f"for client {client!r} outages() returned {spans!r}: each client "
                           "needs a list of (start_s, end_s) pairs") from None
        pairs = []
        for item in items:
            if not (isinstance(item, (tuple, list)) and len(item) == 2
                    and isinstance(item[0], (int, float))
                    and (item[1] is None or isinstance(item[1], (int, float)))):
                raise _Problem(f"for client {client!r} outages() returned an item {item!r}: "
                               "each outage is a pair (start_s, end_s), two numbers of seconds "
                               "(end_s None when the client never came back)")
            pairs.append((float(item[0]), None if item[1] is None else float(item[1])))
        if pairs:
            out[client] = sorted(pairs, key=lambda p: p[0])
    return out


def _events_near(logs: list[Mapping], client: Any, t: float) -> str:
    near = [e for e in logs if e.get("client") == client and abs(e["t"] - t) <= 2 * TOLERANCE_S]
    return "; ".join(f"{e['t']:.2f} s {e.get('side')} {e['event']!r}" for e in near[:4])


def _compare(got: Outages, truth: Outages, logs: list[Mapping], where: str) -> None:
    """Raise a :class:`_Problem` naming the first client and interval that disagree."""
    truth = {c: spans for c, spans in truth.items() if spans}
    for client in sorted(set(got) | set(truth), key=str):
        mine, real = list(got.get(client, [])), list(truth.get(client, []))
        if client not in truth and client not in {e.get("client") for e in logs}:
            raise _Problem(f"{where}: your answer has a client {client!r}, which the log never "
                           "mentions: the keys are the entries' client field")
        for start, end in real:
            match = [m for m in mine if abs(m[0] - start) <= TOLERANCE_S]
            if not match:
                count = (f" Client {client} had {len(real)} outages and your answer has "
                         f"{len(got.get(client, []))}: keep every one, in order."
                         if len(got.get(client, [])) < len(real) else "")
                raise _Problem(
                    f"{where}, client {client}: the record has an outage from {start:.2f} s to "
                    f"{_fmt(end)} and your answer has none starting then.{count} Around "
                    f"{start:.2f} s the log says: {_events_near(logs, client, start)}")
            if len(match) > 1:
                raise _Problem(
                    f"{where}, client {client}: your answer has {len(match)} outages starting at "
                    f"{start:.2f} s, the record one. Around then the log says: "
                    f"{_events_near(logs, client, start)}. The server logs its side of each "
                    "connection too: count each outage once, from the client's side")
            m_end = match[0][1]
            if (m_end is None) != (end is None) or (
                    end is not None and abs(m_end - end) > TOLERANCE_S):
                hint = ""
                if m_end is not None and end is not None and m_end < end:
                    at = [e for e in logs if abs(e["t"] - m_end) < 0.005
                          and e["event"] in ("connected", "connect failed")]
                    own_failure = [e for e in at if e.get("client") == client
                                   and e["event"] == "connect failed"]
                    others = [e for e in at if e.get("client") != client]
                    hint = (" A connect failed is an attempt, not a return: the outage goes on"
                            if own_failure else
                            f" At {m_end:.2f} s it is client {others[0].get('client')} that "
                            f"connected: only client {client}'s own connected ends its outage"
                            if others else " Only this client's next connected ends its outage")
                elif m_end is None:
                    hint = f" The client's next connected came at {end:.2f} s"
                raise _Problem(
                    f"{where}, client {client}: the outage from {start:.2f} s ended at "
                    f"{_fmt(end)}, your answer says {_fmt(m_end)}.{hint}")
            mine.remove(match[0])
        if mine:
            start, end = mine[0]
            side = [e for e in logs if e.get("client") == client and e["event"] == "disconnected"
                    and e.get("side") == "server" and abs(e["t"] - start) <= TOLERANCE_S]
            hint = (" The server logged a disconnection then, and the client its own: count "
                    "each outage once, from the client's side" if side else
                    " No disconnected event of this client comes then: is it another client's?")
            raise _Problem(
                f"{where}, client {client}: your answer has an outage from {start:.2f} s to "
                f"{_fmt(end)} that the record does not.{hint}")


def _answer(outages: Callable, logs: list[dict], where: str) -> Outages:
    got, error = call_safely(outages, [dict(e) for e in logs])
    if error:
        raise _Problem(f"{where}: {error}")
    return _normalise(got)


def check_outages_offline(outages: Callable[[list[dict]], Any]) -> Verdict:
    """Stage 1 alone: the scripted log (no network, instant)."""
    try:
        _compare(_answer(outages, SCRIPT, "the scripted log"), SCRIPT_ANSWER, SCRIPT,
                 "the scripted log")
    except _Problem as problem:
        return Verdict(False, str(problem))
    return Verdict(True, "the scripted log: every outage of every client, to the hundredth")


async def check_outages(outages: Callable[[list[dict]], Any], *, seed: int = 12) -> Verdict:
    """The scripted log, then a real chaos run of the production design: the
    learner's answer from its logs against the lab's record of its connections."""
    from ..lab import arun

    offline = check_outages_offline(outages)
    if not offline:
        return offline
    run = await arun("production", chaos(seed=seed))
    logs = [e for e in run.logs if e["t"] <= run.end_s]  # until the lab stopped the run
    truth = recorded_outages(run)
    where = f"the chaos run (production, seed {seed})"
    try:
        _compare(_answer(outages, logs, where), truth, logs, where)
    except _Problem as problem:
        return Verdict(False, str(problem))
    spans = [(c, s, e) for c, ss in sorted(truth.items()) for s, e in ss]
    said = ", ".join(f"client {c} {s:.2f}–{_fmt(e)}" for c, s, e in spans)
    return Verdict(True, f"{len(spans)} outages in {where}, each within "
                         f"{TOLERANCE_S * 1000:.0f} ms of the lab's record: {said}")
