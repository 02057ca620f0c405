"""The lab: a design's server and clients, in this process, through the proxy.

:func:`arun` (``await`` it in a notebook) and :func:`run` (from a script or a
test) start the design's server on 127.0.0.1 (a free port), a
:class:`~wslab.proxy.FaultProxy` in front of it, and N clients; they drive
the workload, apply the fault plan, and return a :class:`~wslab.run.Run`.

Guarantees:

- Every run keeps a clock (:mod:`wslab.clock`): virtual lab time by default,
  on a fresh event loop in a thread of its own, never the caller's loop.
- Every run has a hard time limit (``time_limit_s``, in lab time) and a limit
  in real seconds: past either, :class:`~wslab.errors.RunTimeoutError`, never
  a hang of the caller.
- A run ends as soon as every message was produced, the last fault window has
  closed and nothing is outstanding (the ledger says so), or at its horizon
  (``Scenario.horizon_end_s``: the planned end, plus ``horizon_s`` lab seconds
  of settling that the grader asks for), whichever comes first; it ends on a
  sample, so its last sample shows the state it ended in.
- When the run returns or raises, or is cancelled at any moment (Ctrl-C, in
  the middle of a restart), nothing it started is left: the clients' tasks
  are cancelled, the server and the proxy are closed with all their
  sockets, and every task the design started (tracked through the event
  loop's task factory) is cancelled and awaited. A design whose tasks ignore
  cancellation makes the run raise :class:`~wslab.errors.DesignHangError`;
  ``run.tasks_left`` counts the design's tasks only, never the lab's own
  (its nemesis, sampler, proxy, or websockets' tasks closing the server).
  Nor is a finished run kept in memory by the loop it ran on.
- Fault windows may come in any order and overlap: the lab itself fails
  only by a bug, and then raises :class:`~wslab.errors.RunError`.
- A design whose server or client is a command (:mod:`wslab.external`) runs
  them as real processes in real time, the server's restarts real ones; when
  the run ends, however it ends, no process of theirs is left running.
- An exception in the design is a result, not a crash: it is recorded in
  ``run.errors``, as are the exceptions of fire-and-forget tasks nobody
  awaited; every exception that ended a piece of a client's or a handler's
  work, handled later or not, is in ``run.task_exceptions`` (read by
  :mod:`wslab.causes`).

The pieces, as in Maelstrom: the network (:class:`~wslab.proxy.FaultProxy`),
the faults as plain data deciding what happens when
(:class:`~wslab.faults.FaultPlan`), one nemesis that acts on the timed ones
(:func:`_nemesis`), the journal (:class:`~wslab.ledger.Ledger`, in the
:class:`~wslab.context.RunContext` the applications share) and the record
(:class:`~wslab.run.Run`). This module wires them together, each in an
``async with`` scope that gives what it made ready (the server's port, the
proxy's) and takes it down on the way out, in order.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from .auth import TokenAuthority
from .clock import clock_of, run_in_lab_loop, run_in_lab_loop_sync
from .context import (RunContext, current_party, current_run, is_lab_task, lab_work,
                      track_tasks)
from .contract import ClientApp, Design, ServerApp, _current_client, _Outbox
from . import external
from .designs import get_design
from .errors import ConfigError, DesignHangError, RunError, RunTimeoutError, WslabError
from .faults import Downtime, FaultPlan, Revoke
from .observability import log_fields
from .proxy import BACKLOG, HOST, FaultProxy, queued_bytes
from .run import Run
from .scenarios import Scenario, get_scenario
from .workload import Workload, make_message

TEARDOWN_GRACE_S = 2.0
WALL_LIMIT_S = 120.0  # real seconds, at least, before a run that does not end is stopped
WALL_PER_CLIENT_S = 0.3  # and this many more per client (a 1,000-client run: 420 s)
SAMPLE_INTERVAL_S = 0.05
LAG_INTERVAL_S = 0.01  # lab seconds the loop-lag monitor sleeps between readings
_PATH = re.compile(r"^/c/(\d+)")

# The logger websockets' server uses for the design's connections. The lab records a
# failing handler itself (run.errors), so websockets' own report of it, with a
# formatted traceback per connection, is switched off: formatting a hundred of them
# at once (a storm's clients all failing together) stalled the event loop.
_design_logger = logging.getLogger("wslab.design")
_design_logger.propagate = False
_design_logger.addHandler(logging.NullHandler())
_design_logger.disabled = True

_PRODUCTION_LOGGER = logging.getLogger("wslab.production")
# Files loaded by wslab.loader log under this name (their __name__): kept in
# run.logs, never printed.
_SUBMISSIONS_LOGGER = logging.getLogger("wslab.submissions")
_SUBMISSIONS_LOGGER.propagate = False
_SUBMISSIONS_LOGGER.setLevel(logging.INFO)
_SUBMISSIONS_LOGGER.addHandler(logging.NullHandler())
_CAPTURED = (_PRODUCTION_LOGGER, _SUBMISSIONS_LOGGER)


class _LogCapture(logging.Handler):
    """Keeps what the production design (or a loaded file) logged during one run, as dicts."""

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(logging.DEBUG)
        self.ctx = ctx

    def emit(self, record: logging.LogRecord) -> None:
        if current_run.get() is self.ctx:
            self.ctx.logs.append({"t": round(self.ctx.now(), 4), **log_fields(record)})


class LabServer:
    """The design's server: started, stopped and restarted by the lab.

    ``async with LabServer(design, ctx) as port:`` listens on 127.0.0.1 (a free
    port) and gives the port; leaving the block closes it (1001). A restart
    (:meth:`stop`, then :meth:`start`) listens on the same port again.

    Guarantees: :meth:`stop` and :meth:`start` are idempotent; a stop returns
    within its grace period, every connection it could not close by then
    aborted (so a restart is back on time); and leaving the block, even
    cancelled at any moment, leaves no listening socket and no open server
    connection behind, whatever state a start or a stop was in.
    """

    def __init__(self, design: Design, ctx: RunContext, down: dict[int, _Outbox] | None = None) -> None:
        if "create_connection" in design.serve_options:
            raise ConfigError(f"design {design.name!r}: serve_options may not set create_connection "
                              "(the lab tracks the server's connections with its own)")
        self.design, self.ctx, self.down = design, ctx, down or {}
        self.port = 0
        self.server: Server | None = None
        self.opens: list[tuple[float, int | None]] = []
        self.state: dict = {}
        self.store: dict = {}  # durable: survives restarts
        # Every server-side TCP connection not yet closed, of this server and of
        # the ones it replaced, from accept on: those still in their opening
        # handshake too (websockets' Server only knows the open ones).
        self.open_connections: set[_LabServerConnection] = set()
        self._stopped: list[Server] = []  # stopped, their close perhaps still under way

    async def __aenter__(self) -> int:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.stop(1001)
            closing = [s.close_task for s in self._stopped if s.close_task is not None]
            if closing:  # what the design's handlers do once their connections are aborted
                await asyncio.wait(closing, timeout=TEARDOWN_GRACE_S)
        finally:  # cancelled or not: nothing listens, nothing stays open
            self._abort()

    async def start(self) -> int:
        """Listen (with an empty ``app.state``: a new server remembers nothing); return
        the port. A no-op while the server listens already."""
        if self.server is not None:
            return self.port
        self.state = {}
        options = {"logger": _design_logger, "backlog": BACKLOG, **self.design.serve_options,
                   "create_connection": self._connection, "start_serving": False}
        try:
            # Nothing awaits between binding the socket and handing the server over
            # (start_serving=False), so a cancellation cannot leave a socket unowned.
            server = await serve(self._handle, HOST, self.port, **options)
        except TypeError as exc:
            raise ConfigError(
                f"design {self.design.name!r}: serve_options are not accepted by "
                f"websockets' serve(): {exc}"
            ) from exc
        except OSError as exc:
            if not self.port:
                raise
            raise RunError(f"the design's server could not listen again on port {self.port} "
                           f"after a restart (another program took it?): {exc}") from exc
        self.server = server
        self.port = server.sockets[0].getsockname()[1]
        try:
            await server.start_serving()
        except BaseException:  # cancelled: as the run's first start, no block's exit will run
            self._abort()
            self.server = None
            raise
        return self.port

    async def stop(self, code: int = 1001, *, grace_s: float = TEARDOWN_GRACE_S) -> None:
        """Stop listening at once, close every connection with ``code`` and give the
        handlers ``grace_s`` to return; then abort every connection still open,
        as a dying process would: one still in its opening handshake (a black
        hole holds it until open_timeout, 10 s by default), one whose handler
        stopped reading (it cannot receive the peer's close frame, and the
        library would wait out its close_timeout). Returns within ``grace_s``
        (a no-op while the server is down); a handler that ignores its closed
        connection is the design's, and teardown reports it."""
        server, self.server = self.server, None
        if server is not None:
            self._stopped.append(server)
            token = lab_work.set(True)  # websockets' close task and the tasks it starts
            try:
                server.close(code=code)
            finally:
                lab_work.reset(token)
            # Stop listening now, not in that task: cancelled before it first runs,
            # it would never close the listening socket.
            server.server.close()
            await asyncio.wait([server.close_task], timeout=max(0.0, grace_s))
        self._abort()

    def _abort(self) -> None:
        """Abort every server connection still open and close every listener."""
        for conn in list(self.open_connections):
            conn.transport.abort()
        for server in (*self._stopped, *([self.server] if self.server is not None else [])):
            server.server.close()

    def _connection(self, *args: Any, **kwargs: Any) -> "_LabServerConnection":
        return _LabServerConnection(self.open_connections, *args, **kwargs)

    def connections(self) -> list[Any]:
        """The connections the server is serving now (none while it is down)."""
        return list(self.server.connections) if self.server is not None else []

    async def _handle(self, websocket: Any) -> None:
        match = _PATH.match(websocket.request.path)
        client_id = int(match.group(1)) if match else None
        current_party.set(("server", client_id))  # this connection's task and what it starts
        self.ctx.record_start(("server", client_id), "server handler")
        self.opens.append((round(self.ctx.now(), 6), client_id))
        if websocket.ping_timeout is not None:
            self.ctx.ping_timeouts_s.add(websocket.ping_timeout)
        app = ServerApp(self.ctx, client_id, self.down.get(client_id), self.state, self.store)
        try:
            await self.design.handler(websocket, app)
        except Exception as exc:
            self.ctx.fail(f"server handler (client {client_id})", exc, work="server handler")
            raise


class _LabServerConnection(ServerConnection):
    """A server connection that is in ``tracked`` from the moment its TCP
    connection is accepted until it is closed."""

    def __init__(self, tracked: set["_LabServerConnection"], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracked = tracked

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._tracked.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._tracked.discard(self)
        super().connection_lost(exc)


class _Clients:
    """The design's clients, one :class:`ClientApp` each, connecting through ``proxy``.

    :meth:`start` runs the design's client for each (tasks of the lab's own, not
    of a task group: the lab stops them in its order). Leaving the block stops
    them: first, for a design with ``stop_grace_s``, a graceful stop
    (``app.stopping``, the network still up; not when the run was cancelled);
    then the proxy resets every connection, so each side sees a dead peer at
    once and no close handshake can hold teardown up; then the tasks are
    cancelled and the clients' sockets aborted.
    """

    def __init__(self, ctx: RunContext, design: Design, proxy: FaultProxy, count: int,
                 up: dict[int, _Outbox]) -> None:
        self.ctx, self.design, self.proxy = ctx, design, proxy
        self.apps = [ClientApp(ctx, i, f"ws://{HOST}:{proxy.port}/c/{i}", up.get(i))
                     for i in range(count)]
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "_Clients":
        return self

    def start(self) -> None:
        for app in self.apps:
            self.tasks.append(asyncio.create_task(_client_main(self.ctx, self.design, app),
                                                  name=f"wslab client {app.client_id}"))

    async def __aexit__(self, exc_type: type | None, *exc: Any) -> None:
        ctx, tasks = self.ctx, self.tasks
        ctx.stopping = True
        # A cancelled run (Ctrl-C, its time limit) stops now: no graceful stop.
        cancelled = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        grace = self.design.stop_grace_s if tasks and not cancelled else 0
        if grace:
            for app in self.apps:
                app.stopping.set()
            await asyncio.wait(tasks, timeout=grace)
        ctx.tearing_down = True
        await self.proxy.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=TEARDOWN_GRACE_S)
        for app in self.apps:
            for conn in app.connections():
                if getattr(conn, "transport", None) is not None:
                    conn.transport.abort()


async def _client_main(ctx: RunContext, design: Design, app: ClientApp) -> None:
    _current_client.set(app)
    current_party.set(("client", app.client_id))
    ctx.record_start(("client", app.client_id), "client")
    try:
        await design.client_main(app)
    except Exception as exc:
        ctx.fail(f"client {app.client_id}", exc, work="client")


async def _produce(ctx: RunContext, outbox: _Outbox, prefix: str) -> None:
    """Produce the workload's messages for one stream at its rate."""
    workload = ctx.workload
    loop = asyncio.get_running_loop()
    try:
        for seq in range(workload.count):
            due = ctx.t0 + seq / workload.rate_per_s
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            msg_id = f"{prefix}.{seq}"
            ctx.ledger.produced(msg_id, round(due - ctx.t0, 6))
            outbox.put(msg_id, make_message(msg_id, workload.size_bytes))
    finally:
        outbox.close()


async def _nemesis(ctx: RunContext, proxy: FaultProxy, server: LabServer, clients: int) -> None:
    """Carry out, each at its moment, what the plan schedules (:meth:`FaultPlan.schedule`):
    a network fault's onset through the proxy, a revocation through the identity
    provider, a downtime by stopping the server and starting it again, and the
    turns of a ``"refused"`` outage flavour by closing and reopening the proxy's
    listening socket. (The faults that act on bytes as they pass, and the other
    flavours of a new connection's failure, the proxy applies by itself.)

    The downtimes (disjoint: :meth:`FaultPlan.downtimes` merges overlapping and
    touching windows) are carried out one after another, each stop given at
    most the downtime's length as grace, so the server is back at each
    window's end and a stop never runs into the next start."""

    async def at(t: float) -> None:
        delay = t - ctx.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def act(item: Any) -> None:
        await at(item.start_s)
        if isinstance(item, Revoke):
            for client in (item.clients if item.clients is not None else range(clients)):
                ctx.auth.revoke(f"c{client}")
        else:
            proxy.onset(item)

    async def restarts(downtimes: list[Downtime]) -> None:
        for down in sorted(downtimes, key=lambda d: d.start_s):
            await at(down.start_s)
            if down.end_s is None:
                await server.stop(down.close_code)
                return
            await server.stop(down.close_code,
                              grace_s=min(TEARDOWN_GRACE_S, down.end_s - ctx.now()))
            await at(down.end_s)
            await server.start()

    async def follow_listener() -> None:
        # The "refused" outage flavour: the proxy stops listening, then listens again.
        t = 0.0
        while (change := ctx.plan.next_listener_change(t)) is not None:
            t = change
            await at(t)
            await proxy.listen(ctx.plan.listening(t))

    schedule = ctx.plan.schedule()
    async with asyncio.TaskGroup() as tg:
        for item in schedule:
            if not isinstance(item, Downtime):
                tg.create_task(act(item), name=f"wslab nemesis {item.kind}")
        tg.create_task(restarts([d for d in schedule if isinstance(d, Downtime)]),
                       name="wslab nemesis server restarts")
        tg.create_task(follow_listener(), name="wslab nemesis listener")


async def _watch_lag(lags_s: list[float]) -> None:
    """Sleep :data:`LAG_INTERVAL_S` of lab time again and again, and record how
    late each wake-up came (s): the loop's lag, what every timer of the run
    (a keepalive's ping timeout among them) suffered at that moment."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + LAG_INTERVAL_S
        await asyncio.sleep(LAG_INTERVAL_S)
        lags_s.append(max(0.0, loop.time() - asked))


class _Sampler:
    """Samples the run every :data:`SAMPLE_INTERVAL_S` (the first at once) and keeps
    every sample; reports progress, if asked, with each one."""

    def __init__(self, ctx: RunContext, take: Callable[[], dict[str, Any]], planned_s: float,
                 progress: Callable[[float], None] | None) -> None:
        self.ctx, self.take, self.planned_s, self.progress = ctx, take, planned_s, progress
        self.samples: list[dict[str, Any]] = []
        self._waiting: list[tuple[Callable[[float], bool], asyncio.Future[float]]] = []

    async def run(self) -> None:
        while True:
            self.samples.append(self.take())
            t = self.ctx.now()
            if self.progress is not None:
                self.progress(min(1.0, t / self.planned_s) if self.planned_s else 1.0)
            for holds, taken in self._waiting:
                if not taken.done() and holds(t):
                    taken.set_result(t)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def first(self, holds: Callable[[float], bool]) -> asyncio.Future[float]:
        """The time of the first sample, from now on, at which ``holds(t)`` is true."""
        taken: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting.append((holds, taken))
        return taken


def _sample(ctx: RunContext, proxy: FaultProxy, server: LabServer,
            apps: list[ClientApp], outboxes: list[_Outbox]) -> dict[str, Any]:
    """One sample of the run's queues and connections (the fields: :class:`~wslab.run.Run`)."""

    def frames(conn: Any) -> int:
        messages = getattr(conn, "recv_messages", None)
        return len(messages.frames) if messages is not None else 0

    client_conns = [c for app in apps for c in app.connections()]
    server_conns = server.connections()
    gauges: dict[str, float] = {}
    for (name, _), value in ctx.gauges.items():
        gauges[name] = gauges.get(name, 0) + value
    return {
        "t": round(ctx.now(), 4),
        "connected": proxy.open_clients(),
        "server_connections": len(server_conns),
        "client_buffer": sum(queued_bytes(getattr(c, "transport", None)) for c in client_conns),
        "server_buffer": sum(queued_bytes(getattr(c, "transport", None)) for c in server_conns),
        "proxy_buffer": proxy.buffered_bytes(),
        "client_recv_queue": sum(frames(c) for c in client_conns),
        "server_recv_queue": sum(frames(c) for c in server_conns),
        "producer_backlog": sum(len(o.items) for o in outboxes),
        "gauges": gauges,
    }


async def _until_over(ctx: RunContext, scenario: Scenario, producers: list[asyncio.Task],
                      sampler: _Sampler) -> float:
    """Wait until the run is over and return when it ended.

    Over: every message produced, the last fault window closed and nothing
    outstanding (the ledger signals it), or the horizon (the planned end plus
    ``Scenario.horizon_s``), whichever comes first. The run ends on the first sample taken once it is over, so its last
    sample shows the state it ended in and ``end_s`` lies on the sampling grid.
    """
    drive_until = max(ctx.workload.production_s, scenario.faults.last_end_s)
    if producers:
        await asyncio.wait(producers)
    accounted = ctx.accounted_for()
    try:
        return await sampler.first(
            lambda t: t >= scenario.horizon_end_s or (t >= drive_until and accounted.done()))
    finally:
        accounted.cancel()


async def _cancel_leftovers(ctx: RunContext) -> int:
    """Cancel whatever the design started and did not finish (tasks it left running
    after its client and server stopped), then wait; return how many it left.

    Raises :class:`DesignHangError`, naming the line each waits on, for tasks
    that ignore cancellation.
    """
    ctx.stopping = ctx.tearing_down = True
    current = asyncio.current_task()
    left = [t for t in ctx.tasks if t is not current and not t.done()]
    left_behind = [t for t in left if not is_lab_task(t)]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=TEARDOWN_GRACE_S)
    ctx.record_unretrieved()
    stuck = [t for t in left if not t.done()]
    if stuck:
        raise DesignHangError(
            "the design's tasks ignored cancellation at teardown: "
            + "; ".join(_where_stuck(t) for t in stuck)
            + ". Do not catch CancelledError without re-raising it.",
            [t.get_name() for t in stuck],
        )
    return len(left_behind)


def _prepare(design: Any, scenario: Any, workload: Workload | None, faults: Any,
             clients: int | None, seed: int | None, settle_s: float | None,
             time_limit_s: float | None, clock: str | None) -> tuple[Design, Scenario]:
    """The design and the scenario with the overrides applied; bad input raises here."""
    the_design = get_design(design)
    clock = external.clock_for(the_design, clock)  # a design with a process: real time
    base = get_scenario(scenario)
    if workload is not None and not isinstance(workload, Workload):
        raise ConfigError(f"workload must be a wslab.Workload, got {workload!r}")
    changes = {k: v for k, v in dict(
        workload=workload, faults=faults if faults is None or isinstance(faults, FaultPlan)
        else FaultPlan(faults), clients=clients, seed=seed, settle_s=settle_s,
        time_limit_s=time_limit_s, clock=clock).items() if v is not None}
    chosen = base.with_(**changes) if changes else base
    external.check_scenario(the_design, chosen)
    return the_design, chosen


def _wall_limit_s(scenario: Scenario) -> float:
    """Real seconds a run may take: generous (lab time is the run's own limit),
    but finite, for a design that blocks the loop or never lets lab time move.
    Every client adds its share: 1,000 clients of network_interruption take
    80 real seconds on a quiet 2-core machine (300,000 messages)."""
    return max(WALL_LIMIT_S + WALL_PER_CLIENT_S * scenario.clients,
               scenario.time_limit_s + 4 * TEARDOWN_GRACE_S)


async def arun(
    design: "str | Design | object",
    scenario: "str | Scenario" = "network_interruption",
    *,
    workload: Workload | None = None,
    faults: "FaultPlan | list | None" = None,
    clients: int | None = None,
    seed: int | None = None,
    settle_s: float | None = None,
    time_limit_s: float | None = None,
    clock: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> Run:
    """Run ``design`` under ``scenario`` and return the :class:`Run`.

    ``scenario`` is a name from :data:`wslab.scenarios.SCENARIOS` or a
    :class:`Scenario`; the keyword arguments override its fields.
    ``clock`` is ``"virtual"``, ``"cpu"`` or ``"real"`` (:mod:`wslab.clock`;
    the scenario's by default, virtual for all but the storm). The run gets a
    fresh event loop of that clock in a thread of its own, and the caller's
    loop stays free meanwhile. ``progress``, if given, is called in the
    caller's loop with the fraction of the planned time done.
    """
    the_design, chosen = _prepare(design, scenario, workload, faults, clients, seed,
                                  settle_s, time_limit_s, clock)
    if progress is not None and clock_of() != chosen.clock:
        caller, report, last = asyncio.get_running_loop(), progress, [-1]

        def progress(fraction: float) -> None:  # from the lab's thread to the caller's loop
            percent = int(fraction * 100)
            if percent != last[0] and not caller.is_closed():  # each percent once, no flood
                last[0] = percent
                caller.call_soon_threadsafe(report, fraction)

    return await run_in_lab_loop(lambda: _arun_here(the_design, chosen, progress),
                                 clock=chosen.clock, wall_limit_s=_wall_limit_s(chosen),
                                 name=f"{the_design.name} × {chosen.name}")


def run(design: "str | Design | object", scenario: "str | Scenario" = "network_interruption",
        *, progress: Callable[[float], None] | None = None, **options: Any) -> Run:
    """Synchronous :func:`arun`, for scripts, tests and notebook cells without ``await``.

    The run has its own loop in its own thread, so this works where a loop is
    already running (a notebook) without nesting loops; the cell just waits.
    """
    the_design, chosen = _prepare(design, scenario, **{
        k: options.pop(k, None) for k in ("workload", "faults", "clients", "seed", "settle_s",
                                          "time_limit_s", "clock")})
    if options:
        raise ConfigError(f"unknown option(s) for wslab.run: {', '.join(sorted(options))}")
    return run_in_lab_loop_sync(lambda: _arun_here(the_design, chosen, progress),
                                clock=chosen.clock, wall_limit_s=_wall_limit_s(chosen),
                                name=f"{the_design.name} × {chosen.name}")


async def _arun_here(the_design: Design, chosen: Scenario,
                     progress: Callable[[float], None] | None) -> Run:
    """The run itself, on the running lab loop."""
    loop = asyncio.get_running_loop()
    track_tasks(loop)
    ctx = RunContext(workload=chosen.workload, plan=chosen.faults, t0=loop.time(),
                     seed=chosen.seed,
                     auth=TokenAuthority(f"wslab-{chosen.seed}".encode(), chosen.token_ttl_s))
    token = current_run.set(ctx)
    log_capture = _LogCapture(ctx)
    for logger in _CAPTURED:
        logger.addHandler(log_capture)
    try:
        # The body runs in a task of its own so that the run's context (and
        # the tasks that inherit it) never leaks into the caller's.
        body = asyncio.ensure_future(_execute(the_design, chosen, ctx, progress))
        body.set_name("wslab run")
    finally:
        current_run.reset(token)
    try:
        try:
            return await asyncio.wait_for(asyncio.shield(body), chosen.time_limit_s)
        except TimeoutError:
            body.cancel()
            done, _ = await asyncio.wait([body], timeout=TEARDOWN_GRACE_S * 2)
            raise RunTimeoutError(
                f"design {the_design.name!r} × scenario {chosen.name!r} passed its hard time "
                f"limit of {chosen.time_limit_s:g} s of lab time (planned {chosen.planned_s:.1f} s); "
                "everything it started was cancelled"
                + ("" if done else ", but some of its tasks ignored cancellation")
            ) from None
        except asyncio.CancelledError:
            body.cancel()
            await asyncio.wait([body], timeout=TEARDOWN_GRACE_S * 2)
            raise
        except WslabError:
            raise
        except Exception as exc:  # noqa: BLE001 - out of the lab's task group
            failure = _lab_failure(exc)
            raise failure from failure.__cause__  # not "during handling of" the group
    finally:
        for logger in _CAPTURED:
            logger.removeHandler(log_capture)
        _forget_cancelled_timers(loop)


def _lab_failure(exc: Exception) -> WslabError:
    """What a failure out of the lab's task group is to the caller: the wslab error
    in it (a restart's :class:`RunError`), or a :class:`RunError` that says the
    lab itself broke (the original chained to it, with its traceback)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        e = pending.pop()
        if isinstance(e, BaseExceptionGroup):
            pending.extend(e.exceptions)
        else:
            leaves.append(e)
    if len(leaves) == 1 and isinstance(leaves[0], WslabError):
        return leaves[0]
    failure = RunError("the lab itself failed (a bug in wslab, not in the design; please "
                       "report it with the run's arguments): "
                       + "; ".join(f"{type(e).__name__}: {e}" for e in leaves))
    failure.__cause__ = exc
    return failure


def _forget_cancelled_timers(loop: asyncio.AbstractEventLoop) -> None:
    """Drop the cancelled timers from ``loop``'s queue, as asyncio does itself once
    they are half of it. Each keeps the context it was scheduled in, and with it
    the run (``current_run``, the client app): a token's one-hour lifetime
    timer, cancelled when its connection closed, would keep a finished run in
    memory for an hour on a loop that outlives it (runs awaited in one lab loop)."""
    scheduled = getattr(loop, "_scheduled", None)  # BaseEventLoop's heap of TimerHandles
    if not isinstance(scheduled, list):
        return
    kept = [handle for handle in scheduled if not handle.cancelled()]
    if len(kept) == len(scheduled):
        return
    for handle in scheduled:
        if handle.cancelled():
            handle._scheduled = False  # noqa: SLF001 - as BaseEventLoop._run_once does
    heapq.heapify(kept)
    scheduled[:] = kept
    loop._timer_cancelled_count = 0  # type: ignore[attr-defined]  # none left in the heap


async def _execute(design: Design, scenario: Scenario, ctx: RunContext,
                   progress: Callable[[float], None] | None) -> Run:
    """One run, in scopes: the server, the proxy in front of it, the clients; each
    scope's exit takes down what it made, innermost first (clients, then the
    network, then the server), and then whatever the design left running."""
    workload, wall_started = ctx.workload, time.perf_counter()
    up = {i: _Outbox() for i in range(scenario.clients)} if workload.produces_up else {}
    down = {i: _Outbox() for i in range(scenario.clients)} if workload.produces_down else {}
    outboxes = [*up.values(), *down.values()]
    processes = external.Processes(design, ctx)  # the design's processes (wslab.external), if any
    server = processes.server(down) or LabServer(design, ctx, down)
    lags_s: list[float] = []
    tasks_left = 0
    try:
        async with (server as server_port,
                    FaultProxy(upstream_port=server_port, plan=scenario.faults, seed=scenario.seed,
                               t0=ctx.t0) as proxy,
                    _Clients(ctx, design, proxy, scenario.clients, up) as clients):
            # Client processes (wslab.external) start first: lab time 0 once they are ready.
            await processes.start_clients(clients.apps, proxy, server)
            sampler = _Sampler(ctx, lambda: _sample(ctx, proxy, server, clients.apps, outboxes),
                               scenario.planned_s, progress)
            async with asyncio.TaskGroup() as lab:
                # The sampler first: its first sample is the state before anything ran.
                sampling = lab.create_task(sampler.run(), name="wslab sampler")
                producers = [
                    lab.create_task(_produce(ctx, outbox, f"{prefix}{i}"),
                                    name=f"wslab producer {prefix}{i}")
                    for prefix, outboxes_of in (("u", up), ("d", down))
                    for i, outbox in outboxes_of.items()
                ]
                nemesis = lab.create_task(_nemesis(ctx, proxy, server, scenario.clients),
                                          name="wslab nemesis")
                lag_watch = lab.create_task(_watch_lag(lags_s), name="wslab lag monitor")
                watch = lab.create_task(processes.watch(), name="wslab processes")
                clients.start()
                end_s = await _until_over(ctx, scenario, producers, sampler)
                watch.cancel()
                nemesis.cancel()
                sampling.cancel()
                lag_watch.cancel()
                for outbox in outboxes:
                    outbox.close()
    finally:
        try:
            tasks_left = await _cancel_leftovers(ctx)
        finally:  # processes that had to be killed at the end count as left running
            tasks_left += await processes.close()
    run = Run(
        design=design.name, scenario=scenario.name, seed=scenario.seed,
        clients=scenario.clients, workload=workload, faults=scenario.faults,
        ledger=ctx.ledger, clock=scenario.clock, duration_s=ctx.now(), wall_s=time.perf_counter() - wall_started,
        end_s=end_s, planned_end_s=scenario.late_after_s,
        tokens_issued=ctx.auth.issued, tokens_verified=ctx.auth.verified,
        samples=sampler.samples, connections=list(proxy.events), server_opens=server.opens,
        client_events=ctx.client_events, errors=ctx.errors, task_exceptions=ctx.task_exceptions,
        task_starts=ctx.task_starts, tasks_left=tasks_left,
        metrics=ctx.metrics, logs=ctx.logs,
        send_blocked=[(t, app.client_id, waited) for app in clients.apps
                      for t, waited in app.send_blocked],
        loop_lags_s=lags_s, ping_timeouts_s=sorted(ctx.ping_timeouts_s),
        frames={"dropped": proxy.frames_dropped, "delayed": proxy.frames_delayed,
                "duplicated": proxy.frames_duplicated},
    )
    if progress is not None:
        progress(1.0)
    return run


def _where_stuck(task: asyncio.Task) -> str:
    """A task's name and the innermost line it waits on: 'Task-7 handler, waiting at mine.py:31'."""
    coro = task.get_coro()
    name = f"{task.get_name()} {getattr(coro, '__qualname__', '?')}"
    where = None
    while coro is not None:  # follow the awaits down to the innermost coroutine
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None and "asyncio" not in Path(frame.f_code.co_filename).parts:
            where = frame

        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    if where is not None:
        name += (f", waiting at {Path(where.f_code.co_filename).name}:{where.f_lineno} "
                 f"in {where.f_code.co_name}")
    return name
