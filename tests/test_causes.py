"""Causes: every task a design starts is recorded as it ends, each client's first
failure is named with its line, and mapped to the fix a lesson teaches.

Real runs on loopback through the lab's proxy (127.0.0.1, port 0), in virtual
time: every figure below is exact. The designs are written here, in the shapes
assistants write (a client class with start() / stop(), a reconnect loop).
"""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

import wslab
from wslab import BlackHole, Design, Workload
from wslab.causes import FIXES, Cause, causes, first_failures
from wslab.course import LESSONS
from wslab.grading import grade
from wslab.run import CodeLine, TaskException
from wslab.workload import message_id

pytestmark = pytest.mark.timeout(120)


def line_of(function, marker: str) -> int:
    """The line number of the line of ``function``'s source that contains ``marker``."""
    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, text in enumerate(lines) if marker in text)


async def handler(websocket, app):
    async for message in websocket:
        await app.process(message)


# A reconnect loop that catches only (OSError, ConnectionClosed), in a client class
# whose stop() cancels its task and gathers it: the failure is retrieved, so
# run.errors does not show it.

class NarrowSender:
    def __init__(self, app):
        self.app = app
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async with self.app.connect() as websocket:  # the line of the cause
                    async for message in self.app.outgoing():
                        await websocket.send(message)
            except (OSError, ConnectionClosed):
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def narrow_client(app):
    sender = NarrowSender(app)
    sender.start()
    try:
        await asyncio.Event().wait()
    finally:
        await sender.stop()


NARROW = Design("narrow_reconnect", handler=handler, client=narrow_client)


def test_a_handshake_failure_ends_a_narrow_reconnect_loop_and_the_cause_survives_stop():
    run = wslab.run(NARROW, "server_restart")
    # While the server restarts, the load balancer in front answers 503 first (the
    # scenario's first outage flavour): the retry fails its opening handshake.
    assert not any("InvalidStatus" in e.error for e in run.errors)  # stop() retrieved it
    ended = [f for f in run.task_exceptions if f.work == "NarrowSender._run"]
    assert sorted(f.client_id for f in ended) == [0, 1, 2]
    line = line_of(NarrowSender._run, "the line of the cause")
    for failure in ended:
        assert failure.kind == "InvalidStatus" and failure.side == "client"
        assert failure.is_a("websockets.exceptions.InvalidHandshake")
        assert failure.where.file.endswith("test_causes.py") and failure.where.line == line
        assert failure.where.code.startswith("async with self.app.connect() as websocket:")
    [cause] = causes(run)
    assert (cause.side, cause.clients, cause.lesson) == ("client", (0, 1, 2), "03")
    assert cause.advice.startswith("your reconnect loop ended on InvalidStatus during the "
                                   "opening handshake")
    assert "InvalidHandshake" in cause.advice and "OSError and ConnectionClosed" in cause.advice
    assert cause.text().startswith(f"clients 0–2: InvalidStatus at {cause.failure.where.file}:"
                                   f"{line} `async with self.app.connect() as websocket:")
    assert cause.text().endswith("— lesson 03")


def test_the_card_shows_the_cause_in_text_html_and_json():
    card = grade(NARROW, scenarios=["server_restart", "lost_acknowledgements"], progress=False)
    row = card["server_restart"]
    assert not row.passed and [c.text() for c in row.causes] == [c.text() for c in causes(row.run)]
    line = line_of(NarrowSender._run, "the line of the cause")
    expected = row.causes[0].text()
    assert f"test_causes.py:{line}" in expected
    assert f"cause: {expected}" in card.text()
    assert "cause</i>: clients 0–2: InvalidStatus" in card._repr_html_()
    [shown] = json.loads(json.dumps(card.to_json()))["scenarios"][0]["causes"]
    assert shown["clients"] == [0, 1, 2] and shown["kind"] == "InvalidStatus"
    assert shown["where"]["line"] == line and shown["lesson"] == "03"
    assert card["lost_acknowledgements"].passed and card["lost_acknowledgements"].causes == []


# Cancellation ------------------------------------------------------------------

async def cancelling_client(app):
    async def waits_politely():
        await asyncio.Event().wait()

    async def swallows():  # the line of the swallowing task
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return

    tasks = [asyncio.create_task(waits_politely()), asyncio.create_task(swallows())]
    await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    async with app.connect() as websocket:
        async for message in app.outgoing():
            await websocket.send(message)


def test_a_cancelled_task_is_no_cause_and_one_that_swallows_its_cancellation_is():
    design = Design("cancelling", handler=handler, client=cancelling_client)
    run = wslab.run(design, workload=Workload(count=20, rate_per_s=100), faults=[], settle_s=0.5)
    assert run.summary()["lost"] == 0 and run.errors == []
    [failure] = run.task_exceptions  # the polite task, cancelled, is not recorded
    assert failure.work.endswith("swallows") and failure.swallowed_cancel
    assert failure.where.line == line_of(cancelling_client, "the line of the swallowing task")
    [cause] = causes(run)
    assert cause.lesson == "08b" and "returned after it was cancelled" in cause.advice


# Work the design starts again has recovered -----------------------------------

async def supervising_client(app):
    """A sender task per connection; when it dies, the loop connects and starts another."""
    while True:
        try:
            async with app.connect(open_timeout=1) as websocket:
                async def send_all():
                    async for message in app.outgoing():
                        await websocket.send(message)

                await asyncio.create_task(send_all())
        except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake):
            await asyncio.sleep(0.05)


def test_a_task_started_again_after_it_failed_is_not_a_cause():
    design = Design("supervising", handler=handler, client=supervising_client)
    run = wslab.run(design, "network_interruption")
    sender_ends = [f for f in run.task_exceptions if f.work.endswith("send_all")]
    assert sender_ends and all(f.is_a("websockets.exceptions.ConnectionClosed") for f in sender_ends)
    assert run.reconnects >= 1
    assert first_failures(run) == {} and causes(run) == []


# More causes, each from a real run -----------------------------------------------

async def queue_client(app):
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=5)

    async def fill():
        async for message in app.outgoing():
            queue.put_nowait(message)  # the line of the full queue

    async with app.connect() as websocket:
        filler = asyncio.create_task(fill())
        while True:
            await asyncio.sleep(0.05)  # a slow sender
            await websocket.send(await queue.get())
            if filler.done():
                break


async def token_client(app):
    async def refresh():
        while True:
            app.token = await app.fetch_token()  # the line of the revoked token
            await asyncio.sleep(0.1)

    refresher = asyncio.create_task(refresh())
    async with app.connect() as websocket:
        async for message in app.outgoing():
            await websocket.send(message)
    await refresher


async def impatient_client(app):
    async with app.connect(open_timeout=0.5) as websocket:  # the line of the timeout
        async for message in app.outgoing():
            await websocket.send(message)


async def raising_client(app):
    async with app.connect() as websocket:
        async for message in app.outgoing():
            await websocket.send(message)
            if message_id(message) == "u0.5":
                raise ValueError("the fifth message")  # the line of the bug


@pytest.mark.parametrize("client, options, kind, lesson, marker, advice", [
    (queue_client, dict(workload=Workload(count=40, rate_per_s=400), faults=[]),
     "QueueFull", "05", "the line of the full queue", "put_nowait() on a full asyncio.Queue"),
    (token_client, dict(scenario="token_expiry"),
     "TokenRevoked", "09", "the line of the revoked token", "the session was revoked"),
    (impatient_client, dict(workload=Workload(count=10, rate_per_s=100),
                            faults=[BlackHole(start_s=0.0, duration_s=2.0)], settle_s=0.5),
     "TimeoutError", "03", "the line of the timeout", "opening the connection timed out"),
    (raising_client, dict(workload=Workload(count=20, rate_per_s=100), faults=[], settle_s=0.3),
     "ValueError", "02", "the line of the bug", "an exception ended the client: ValueError"),
])
def test_each_kind_of_failure_maps_to_its_fix(client, options, kind, lesson, marker, advice):
    run = wslab.run(Design(kind, handler=handler, client=client), **options)
    found = causes(run)
    assert [c.failure.kind for c in found] == [kind], [c.text() for c in found]
    [cause] = found
    assert cause.lesson == lesson and cause.advice.startswith(advice), cause.text()
    assert cause.failure.where.line == line_of(client, marker)


def test_a_connection_closed_that_ends_the_client_says_nothing_reconnects():
    async def client(app):
        async with app.connect() as websocket:
            async for message in app.outgoing():
                await websocket.send(message)
            await websocket.wait_closed()

    run = wslab.run(Design("once", handler=handler, client=client), "network_interruption")
    [cause] = causes(run)  # the server's handler ends too: its client went away, no cause
    assert cause.side == "client" and cause.failure.is_a("websockets.exceptions.ConnectionClosed")
    assert cause.lesson == "03" and "nothing reconnects" in cause.advice, cause.text()
    assert any(f.side == "server" for f in run.task_exceptions)


# The table and the text, as data -----------------------------------------------

def test_every_fix_names_a_real_lesson_and_the_last_applies_to_anything():
    assert all(fix.lesson in LESSONS for fix in FIXES if fix.advice is not None)
    anything = TaskException(1.0, "client", 0, "client", "KeyError: 'x'", ("builtins.KeyError",))
    assert FIXES[-1].applies(anything, False)


def test_clients_are_grouped_in_ranges():
    where = CodeLine("mine.py", 7, "f", "x = 1", True)
    failure = TaskException(1.0, "client", 0, "client", "E", ("builtins.ValueError",),
                            stack=(where,))
    cause = Cause("client", (0, 1, 2, 5, 7, 8), failure, "fix it", "02")
    assert cause.text() == "clients 0–2, 5, 7–8: ValueError at mine.py:7 `x = 1` → fix it — lesson 02"
    assert Cause("server", (3,), failure, "fix it", "02").who() == "server (client 3)"


def test_a_task_group_failure_is_recorded_as_the_exception_inside_it():
    async def client(app):
        async def sender(websocket):
            async for message in app.outgoing():
                await websocket.send(message)
                if message_id(message) == "u0.3":
                    raise KeyError("no such field")  # the line inside the group

        async with app.connect() as websocket, asyncio.TaskGroup() as group:
            group.create_task(sender(websocket))

    run = wslab.run(Design("grouped", handler=handler, client=client),
                    workload=Workload(count=10, rate_per_s=100), faults=[], settle_s=0.3)
    by_work = {f.work: f for f in run.task_exceptions if f.side == "client"}
    assert set(by_work) == {"test_a_task_group_failure_is_recorded_as_the_exception_inside_it."
                            "<locals>.client.<locals>.sender", "client"}
    line = line_of(client, "the line inside the group")
    assert all(f.kind == "KeyError" and f.where.line == line for f in by_work.values())
    [cause] = causes(run)  # the outermost work, the client, with the line inside the group
    assert cause.failure.work == "client" and cause.failure.where.line == line
    assert cause.lesson == "02"


def test_a_handler_failure_is_a_server_side_cause():
    async def checking_handler(websocket, app):
        token = await websocket.recv()
        async for message in websocket:
            app.verify_token(token)  # the line of the expired token
            await app.process(message)

    async def client(app):
        async with app.connect() as websocket:
            await websocket.send(await app.fetch_token())
            async for message in app.outgoing():
                await websocket.send(message)

    run = wslab.run(Design("checks", handler=checking_handler, client=client), "token_expiry")
    by_side = {cause.side: cause for cause in causes(run)}
    server = by_side["server"]
    assert server.clients == (0, 1) and server.failure.kind == "TokenExpired"
    assert server.lesson == "09" and server.advice.startswith("TokenExpired escaped the handler")
    assert server.failure.where.line == line_of(checking_handler, "the line of the expired token")
    assert server.text().startswith("server (clients 0–1): TokenExpired at ")
    client_cause = by_side["client"]  # closed with 1011 by the failing handler: nothing reconnects
    assert client_cause.lesson == "03" and "close code 1011" in client_cause.advice
