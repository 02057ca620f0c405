"""Lesson 13's exercise: adapt a standalone program to the design contract.

The learner takes ``data/submissions/tutorial_echo.py`` (a server that echoes
each message, started with ``asyncio.run`` at import) and the client of the
same tutorial, and writes the two functions the lab runs::

    async def handler(websocket, app): ...   # one call per connection
    async def client(app): ...               # one client; app.connect()

:func:`check_adapted` checks them as :func:`wslab.loader.load_design` checks a
file (same messages), then runs them for real: two clients each send
``COUNT`` messages, the server application answers every one (an echo), and
every message and every echo must be delivered once. It answers with the
first thing that went wrong, concretely: the loader's message, the exception
the design raised and where, the first message that was lost and on which
side, a message delivered twice or one the lab never produced.
"""

from __future__ import annotations

import types
from collections.abc import Callable

from ..contract import Design
from ..errors import DesignContractError, RunError
from ..lab import arun
from ..loader import design_from_module
from ..run import Run
from ..scenarios import Scenario
from ..workload import Workload
from .checking import Verdict

COUNT = 30
CLIENTS = 2

# No fault: adapting must not change what the program does on the happy path.
ECHO_SCENARIO = Scenario(
    "echo",
    f"{CLIENTS} clients each send {COUNT} messages (100/s); the server answers every one.",
    Workload(count=COUNT, rate_per_s=100, direction="up", echo=True),
    clients=CLIENTS, seed=13, settle_s=0.6, time_limit_s=15.0)


def adapted_design(handler: Callable, client: Callable) -> Design:
    """The design ``handler`` and ``client`` make, checked as the loader checks a
    file (raises :class:`~wslab.DesignContractError` with the loader's message)."""
    cell = types.ModuleType("your_cell")
    cell.handler, cell.client = handler, client
    return design_from_module(cell, "your adaptation", "your cell")


def problem_in_run(run: Run) -> str | None:
    """What went wrong in a run of the echo scenario, for a person; None if nothing."""
    records = run.ledger.records
    if run.ledger.unexpected:
        return (f"{len(run.ledger.unexpected)} message(s) reached an application that the lab "
                "never produced: hand each message on unchanged (app.process(message)) and "
                "send the reply app.process returns as it is, not f\"Echo: {message}\"")
    for record in sorted(records.values(), key=lambda r: r.produced_s):
        if len(record.deliveries) > 1:
            who = "the server" if record.msg_id.startswith("u") else "the client"
            return (f"message {record.msg_id} was delivered {len(record.deliveries)} times: "
                    f"keep one recipient per message (for a {record.msg_id[0]!r} message, "
                    f"{who}); a broadcast to the other clients' connections hands it to their "
                    "client application again. Leave the broadcast out: in the lab, a server "
                    "push goes through app.outgoing()")
    client_failure = next((e for e in run.errors if e.where.startswith("client")), None)
    if client_failure is not None:
        return _raised(client_failure)
    up = [r for r in records.values() if r.msg_id.startswith("u")]
    lost_up = [r for r in up if not r.deliveries]
    if lost_up and all(r.accepted_s is None for r in up):
        return ("the client never took a message from app.outgoing(): send each message "
                "`async for message in app.outgoing()` yields")
    if lost_up:
        first = min(lost_up, key=lambda r: r.produced_s)
        client = first.msg_id[1:].split(".")[0]
        return (f"message {first.msg_id} (client {client}) was sent but never reached "
                f"app.process: {len(lost_up)} of {len(up)} lost. The handler must call "
                "`reply = await app.process(message)` for every message it receives")
    echoes = [r for r in records.values() if r.msg_id.startswith("e")]
    lost_echoes = [r for r in echoes if not r.deliveries]
    answered = {r.msg_id[1:] for r in echoes}
    unanswered = sorted((r for r in up if r.msg_id[1:] not in answered), key=lambda r: r.produced_s)
    if unanswered:
        first = unanswered[0]
        return (f"message {first.msg_id} never went through app.process on the server "
                f"({len(unanswered)} of {len(up)} did not), yet it was delivered: the handler "
                "sent the text back itself and the client handed it to app.deliver. Call "
                "`reply = await app.process(message)` and send that reply")
    if lost_echoes:
        first = min(lost_echoes, key=lambda r: r.produced_s)
        unread = max((s["client_recv_queue"] for s in run.samples), default=0)
        where = ("they reached the client's socket and stayed there: the client must read "
                 "its connection (`async for reply in websocket`) and hand each reply to "
                 "`await app.deliver(reply)`" if unread else
                 "the server must send the reply app.process returns "
                 "(`if reply is not None: await websocket.send(reply)`), and the client hand "
                 "each one to `await app.deliver(reply)`")
        return (f"the reply {first.msg_id} (to u{first.msg_id[1:]}) never reached the client "
                f"application, nor did {len(lost_echoes) - 1} other(s): {where}")
    if run.errors:
        return _raised(run.errors[0])
    return None


def _raised(failure) -> str:
    hint = ""
    if failure.where.startswith("client") and any(
            word in failure.error for word in ("8765", "refused", "Connect call failed")):
        hint = (": connect with app.connect(), which opens the lab's server through its "
                "proxy (nothing listens on localhost:8765)")
    return f"at {failure.t_s:.2f} s, {failure.where} raised {failure.error}{hint}"


async def check_adapted(handler: Callable, client: Callable) -> Verdict:
    """Lesson 13: ``handler(websocket, app)`` and ``client(app)``, adapted from
    tutorial_echo.py, fit the contract and deliver every message and echo."""
    try:
        design = adapted_design(handler, client)
    except DesignContractError as exc:
        return Verdict(False, f"the loader refuses it: {exc}")
    try:
        run = await arun(design, ECHO_SCENARIO)
    except RunError as exc:
        return Verdict(False, f"the run did not finish: {exc}")
    problem = problem_in_run(run)
    if problem is not None:
        return Verdict(False, problem)
    s = run.summary()
    return Verdict(True, f"it fits the contract, and in the lab {s['delivered']} of {s['sent']} "
                         f"messages (each of {CLIENTS} clients' {COUNT} and their echoes) "
                         "were delivered once each")
