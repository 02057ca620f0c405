"""Lesson 08's exercise: the client's graceful stop.

The learner writes::

    async def stop_client(websocket, unacked, app, timeout_s): ...

The lab calls it when the application asks the client to stop (``app.stopping``,
SIGTERM in a real program), once the client has stopped taking new events.
``unacked`` holds the events sent and not acknowledged yet: ``len(unacked)``,
``unacked.messages()`` (oldest first) and ``await unacked.wait_empty()``; the
client's reader keeps removing events from it as acknowledgements arrive.
The function must wait at most ``timeout_s`` for those acknowledgements, close
the connection with 1000, and report each event still unacknowledged with
``app.reject(event, reason)``.

:func:`check_stop_client` runs it for real, four stops at once, each a lab
run of about a second against a server that acknowledges an event once it has
processed it:

- **busy**: the server is slow (20 ms an event) and about 30 events are
  unacknowledged at the stop: some acknowledgements come during the wait,
  the rest must be reported, and the server must see a close with 1000;
- **idle**: everything was acknowledged before the stop: the stop must not
  wait for the clock;
- **silent**: the network swallows everything from 0.5 s on, so no
  acknowledgement can come: the wait must end at ``timeout_s``;
- **cancelled**: ``timeout_s`` is longer than the process's grace period, so
  the process cancels the stop: the ``CancelledError`` must go through.

The first problem found is the hint: which events were lost or reported
wrongly, when the connection was closed and with which code.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..contract import Design
from ..errors import RunError
from ..experiments import shutdown as experiment
from ..faults import BlackHole, FaultPlan, SlowConsumer
from ..lab import arun
from ..run import Run
from ..workload import message_id
from .checking import Verdict, describe_error

TIMEOUT_S = 0.4  # what the checker passes as timeout_s
GRACE_S = 0.9  # the process's grace period: the wait, the close, a margin
CLOSE_TIMEOUT_S = 0.1
SILENT_FROM_S = 0.5
CANCEL_TIMEOUT_S = 3.0  # the cancelled trial: longer than its grace
CANCEL_GRACE_S = 0.5
SHAPE = "async def stop_client(websocket, unacked, app, timeout_s)"

StopClient = Callable[[Any, "Unacked", Any, float], Any]


class Unacked:
    """The events sent and not acknowledged yet, oldest first.

    ``len(unacked)``, ``unacked.messages()`` and ``await unacked.wait_empty()``
    are for the learner; the client's sender adds, its reader acknowledges.
    """

    def __init__(self) -> None:
        self._pending: dict[int, str] = {}
        self._acked: set[str] = set()  # every event acknowledged so far (for the hints)
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def __repr__(self) -> str:
        return f"<Unacked: {len(self._pending)} events>"

    def messages(self) -> list[str]:
        """The events still unacknowledged, oldest first (a copy)."""
        return list(self._pending.values())

    async def wait_empty(self) -> None:
        """Return once every event has been acknowledged (at once if none is left)."""
        while self._pending:
            self._changed.clear()
            await self._changed.wait()

    def _add(self, seq: int, event: str) -> None:
        self._pending[seq] = event

    def _ack(self, seq: int) -> None:
        event = self._pending.pop(seq, None)
        if event is not None:
            self._acked.add(event)
        self._changed.set()


@dataclass
class _Trial:
    """What one stop did, as the client saw it (times from the start of the stop)."""

    name: str
    timeout_s: float
    grace_s: float
    unacked_at_stop: int = -1
    closed_at_s: float | None = None
    close_code: int | None = None
    unacked_at_close: int | None = None
    reported: list[str] = field(default_factory=list)
    returned_at_s: float | None = None
    cancelled_at_s: float | None = None
    swallowed: bool = False
    error: str | None = None
    started: float = 0.0
    acked: set[str] = field(default_factory=set)  # events acknowledged to the client


class _WatchedConnection:
    """The client's connection, noting when the learner closes it and how."""

    def __init__(self, websocket: Any, trial: _Trial, unacked: Unacked) -> None:
        self._websocket, self._trial, self._unacked = websocket, trial, unacked

    async def close(self, code: int = 1000, reason: str = "") -> None:
        trial = self._trial
        if trial.closed_at_s is None:
            trial.closed_at_s = asyncio.get_running_loop().time() - trial.started
            trial.close_code, trial.unacked_at_close = code, len(self._unacked)
        await self._websocket.close(code, reason)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._websocket, name)


class _WatchedApp:
    """The client application, noting what the learner reports."""

    def __init__(self, app: Any, trial: _Trial) -> None:
        self._app, self._trial = app, trial

    def reject(self, message: str, reason: str = "") -> None:
        self._trial.reported.append(message)
        self._app.reject(message, reason)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


async def _server(websocket, app) -> None:
    """Acknowledge each event once it is processed. A reader keeps reading the
    socket while the worker is busy, so a client's close frame is always read."""
    inbox: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        try:
            async for frame in websocket:
                inbox.put_nowait(json.loads(frame))
        except ConnectionClosed:
            pass

    async def work() -> None:
        while True:
            event = await inbox.get()
            await app.process(event["body"])
            try:
                await websocket.send(json.dumps({"ack": event["seq"]}))
            except ConnectionClosed:
                return

    async with asyncio.TaskGroup() as tasks:
        reader = tasks.create_task(read())
        worker = tasks.create_task(work())
        await asyncio.wait([reader, worker], return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        worker.cancel()


def _design(fn: StopClient, trial: _Trial) -> Design:
    async def client(app) -> None:
        unacked = Unacked()
        async with app.connect(close_timeout=CLOSE_TIMEOUT_S) as websocket:

            async def send() -> None:
                seq = 0
                async for event in app.outgoing():
                    unacked._add(seq, event)
                    await websocket.send(json.dumps({"seq": seq, "body": event}))
                    seq += 1

            async def read_acks() -> None:
                try:
                    async for frame in websocket:
                        unacked._ack(json.loads(frame)["ack"])
                except ConnectionClosed:
                    pass

            async with asyncio.TaskGroup() as tasks:
                sender = tasks.create_task(send())
                reader = tasks.create_task(read_acks())
                await app.stopping.wait()
                sender.cancel()
                await _call(fn, _WatchedConnection(websocket, trial, unacked), unacked,
                            _WatchedApp(app, trial), trial)
                reader.cancel()

    return Design(f"your stop_client ({trial.name})", handler=_server, client=client,
                  stop_grace_s=trial.grace_s)


async def _call(fn: StopClient, websocket: Any, unacked: Unacked, app: Any, trial: _Trial) -> None:
    loop = asyncio.get_running_loop()
    trial.started, trial.unacked_at_stop = loop.time(), len(unacked)
    trial.acked = unacked._acked  # the same set: it keeps growing during the stop
    try:
        await fn(websocket, unacked, app, trial.timeout_s)
    except asyncio.CancelledError:
        trial.cancelled_at_s = loop.time() - trial.started
        raise
    except Exception as exc:
        trial.error = describe_error(exc)
        return
    trial.returned_at_s = loop.time() - trial.started
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        trial.swallowed = True
        raise asyncio.CancelledError  # end as the process asked


def _trials() -> list[tuple[_Trial, Any]]:
    busy = experiment.stop_scenario()
    idle = busy.with_(name="stop with nothing left", faults=FaultPlan([]))
    silent = busy.with_(name="stop with a silent server",
                        faults=FaultPlan([SlowConsumer(side="server", delay_s=0.02),
                                          BlackHole(start_s=SILENT_FROM_S)]))
    return [
        (_Trial("busy", TIMEOUT_S, GRACE_S), busy),
        (_Trial("idle", TIMEOUT_S, GRACE_S), idle),
        (_Trial("silent", TIMEOUT_S, GRACE_S), silent),
        (_Trial("cancelled", CANCEL_TIMEOUT_S, CANCEL_GRACE_S), silent),
    ]


def _span(ids: list[str]) -> str:
    """'u0.50–u0.79 (30 events)' or 'u0.51'."""
    ordered = sorted(ids, key=lambda i: int(i.rsplit(".", 1)[1]) if i.rsplit(".", 1)[-1].isdigit() else 0)
    if len(ordered) == 1:
        return ordered[0]
    return f"{ordered[0]}–{ordered[-1]} ({len(ordered)} events)"


@dataclass
class _Outcome:
    trial: _Trial
    run: Run | None
    server_close: experiment.ServerConnection | None
    error: str | None = None


async def _run_trial(fn: StopClient, trial: _Trial, scenario) -> _Outcome:
    design, seen = experiment.observed(_design(fn, trial))
    try:
        run = await arun(design, scenario)
    except RunError as exc:
        return _Outcome(trial, None, None, str(exc))
    closes = [s.closing() for s in seen]
    return _Outcome(trial, run, closes[-1] if closes else None)


def _judge(outcome: _Outcome) -> str | None:
    """The first problem in one trial, for a person; None when it passed."""
    trial, run = outcome.trial, outcome.run
    where = {"busy": "In the stop with a busy server (about 30 events unacknowledged)",
             "idle": "In the stop with every event already acknowledged",
             "silent": "In the stop with a silent server (no acknowledgement can come)",
             "cancelled": (f"In the stop where timeout_s ({trial.timeout_s:g} s) is longer than "
                           f"the process's grace period ({trial.grace_s:g} s)")}[trial.name]
    if trial.swallowed or (outcome.error and trial.name == "cancelled"):
        return (f"{where}, the process cancelled your stop after {trial.grace_s:g} s and your "
                "function caught the CancelledError and carried on (a bare `except:` or "
                "`except BaseException`): catch TimeoutError only, and let a cancellation "
                "through, or a stop becomes a hang")
    if outcome.error:
        return f"{where}, the run did not finish: {outcome.error}"
    if trial.error:
        return f"{where}, {trial.error}"
    assert run is not None
    lost = run.ledger.lost_ids()
    if trial.name == "cancelled":
        if trial.cancelled_at_s is None:
            return (f"{where}, your function returned after {trial.returned_at_s:.2f} s instead of "
                    "being cancelled: wait for the acknowledgements for timeout_s, not less")
        return None
    if trial.cancelled_at_s is not None:
        return (f"{where}, your function was still waiting when the process's grace period "
                f"({trial.grace_s:g} s) ran out, and was cancelled: "
                + (f"the events {_span(lost)} were lost without a word. " if lost else
                   f"the {trial.unacked_at_stop} events it held were never reported. ")
                + f"Bound the wait: `async with asyncio.timeout(timeout_s)` ({trial.timeout_s:g} s "
                "here), then close and report what is left")
    if lost:
        return (f"{where}, the events {_span(lost)} were neither acknowledged nor reported: "
                "after the wait, call app.reject(event, reason) for each event still in "
                "unacked.messages()")
    stale = [m for m in trial.reported if m in trial.acked]
    if stale:
        ids = [message_id(m) or "?" for m in stale]
        return (f"{where}, you reported {_span(ids)} as undelivered although the server "
                "acknowledged them during the wait: read unacked.messages() after the wait, "
                "not before")
    if trial.closed_at_s is None:
        return (f"{where}, your function never closed the connection: the server saw it end "
                "with 1006 (no close frame) when the process exited. Close it with "
                "`await websocket.close(1000)` once the wait is over")
    if trial.name == "busy":
        if trial.closed_at_s < trial.timeout_s / 2 and trial.unacked_at_close:
            return (f"{where}, you closed the connection {trial.closed_at_s:.2f} s into the stop "
                    f"with {trial.unacked_at_close} events unacknowledged: no acknowledgement "
                    "can arrive after that, so every one of them had to be reported. Wait "
                    "first, then close")
        if trial.close_code != 1000:
            return (f"{where}, you closed with {trial.close_code}: a client that is done says "
                    "1000 (normal closure); 1001 means going away (a server shutting down, a "
                    "page left), and the server would treat the stop as something else")
        server = outcome.server_close
        if server is None or server.initiated_by != "client":
            seen = "nothing" if server is None else f"{server.code} ({server.initiated_by})"
            return (f"{where}, the server saw {seen} instead of your close frame: close the "
                    "connection before the function returns")
    if trial.name == "idle" and trial.closed_at_s > trial.timeout_s / 2:
        left = (f"only {trial.unacked_at_stop} event(s) were" if trial.unacked_at_stop
                else "nothing was")
        return (f"{where}, you closed {trial.closed_at_s:.2f} s into the stop although "
                f"{left} left to acknowledge: wait for the "
                "acknowledgements (`await unacked.wait_empty()`) with a deadline, not for the "
                "clock; a deploy waits for the slowest of its clients")
    return None


async def check_stop_client(fn: StopClient) -> Verdict:
    """Lesson 08: run ``fn`` as the client's stop in four stops at once (see the
    module docstring) and answer with the first problem, or a pass."""
    if not callable(fn):
        return Verdict(False, f"pass your function itself: {SHAPE}")
    if not inspect.iscoroutinefunction(fn):
        return Verdict(False, f"stop_client must be a coroutine function: {SHAPE} "
                              "(it awaits the acknowledgements and the close)")
    try:
        inspect.signature(fn).bind(None, None, None, None)
    except TypeError:
        return Verdict(False, f"stop_client takes four arguments: {SHAPE}; "
                              f"yours is {fn.__name__}{inspect.signature(fn)}")
    trials = _trials()
    outcomes = await asyncio.gather(*(_run_trial(fn, trial, scenario)
                                      for trial, scenario in trials))
    for outcome in outcomes:
        problem = _judge(outcome)
        if problem:
            return Verdict(False, problem)
    busy, idle = outcomes[0], outcomes[1]
    b = busy.run.summary() if busy.run is not None else {}
    return Verdict(True, (
        f"busy server: {busy.trial.unacked_at_stop} events unacknowledged at the stop, "
        f"{b.get('rejected', 0)} reported after {busy.trial.closed_at_s:.2f} s, closed with "
        f"{busy.trial.close_code}; nothing left: closed after {idle.trial.closed_at_s:.2f} s; "
        f"silent server: gave up after {outcomes[2].trial.closed_at_s:.2f} s and reported "
        f"every event; cancelled: let the cancellation through"))

