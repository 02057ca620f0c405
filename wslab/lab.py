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
- When the run returns or raises, nothing it started is left: the clients'
  tasks are cancelled, the server and the proxy are closed with all their
  sockets, and every task the design started (tracked through the event
  loop's task factory) is cancelled and awaited. A design whose tasks ignore
  cancellation makes the run raise :class:`~wslab.errors.DesignHangError`.
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
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, serve

from .auth import TokenAuthority
from .clock import clock_of, run_in_lab_loop, run_in_lab_loop_sync
from .context import RunContext, current_party, current_run, track_tasks
from .contract import ClientApp, Design, ServerApp, _current_client, _Outbox
from .designs import get_design
from .errors import ConfigError, DesignHangError, RunTimeoutError
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
    """

    def __init__(self, design: Design, ctx: RunContext, down: dict[int, _Outbox] | None = None) -> None:
        self.design, self.ctx, self.down = design, ctx, down or {}
        self.port = 0
        self.server: Server | None = None
        self.opens: list[tuple[float, int | None]] = []
        self.state: dict = {}
        self.store: dict = {}  # durable: survives restarts
        self.live: set[Any] = set()  # server connections not known to be closed

    async def __aenter__(self) -> int:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop(1001)

    async def start(self) -> int:
        """Listen (with an empty ``app.state``: a new server remembers nothing); return the port."""
        self.state = {}
        options = {"logger": _design_logger, "backlog": BACKLOG, **self.design.serve_options}
        try:
            self.server = await serve(self._handle, HOST, self.port, **options)
        except TypeError as exc:
            raise ConfigError(
                f"design {self.design.name!r}: serve_options are not accepted by "
                f"websockets' serve(): {exc}"
            ) from exc
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self, code: int = 1001) -> None:
        """Close every connection with ``code`` and stop listening. A connection
        still closing after the grace period (a handler that stopped reading
        cannot receive the peer's close frame, and the library would wait out
        its close_timeout, 10 s by default) is aborted, as a dying process would."""
        server, self.server = self.server, None
        if server is None:
            return
        server.close(code=code)
        try:
            await asyncio.wait_for(asyncio.shield(server.wait_closed()), TEARDOWN_GRACE_S)
        except TimeoutError:
            for conn in list(self.live):
                conn.transport.abort()
            try:
                await asyncio.wait_for(server.wait_closed(), TEARDOWN_GRACE_S)
            except TimeoutError:
                pass  # the handlers still running are the design's; teardown reports them

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
        # Known until its TCP connection is lost (state CLOSED): a callback, not a
        # scan of every connection per new one (quadratic in a storm of 1,000).
        self.live.add(websocket)
        websocket.connection_lost_waiter.add_done_callback(lambda _: self.live.discard(websocket))
        app = ServerApp(self.ctx, client_id, self.down.get(client_id), self.state, self.store)
        try:
            await self.design.handler(websocket, app)
        except Exception as exc:
            self.ctx.fail(f"server handler (client {client_id})", exc, work="server handler")
            raise


class _Clients:
    """The design's clients, one :class:`ClientApp` each, connecting through ``proxy``.

    :meth:`start` runs the design's client for each (tasks of the lab's own, not
    of a task group: the lab stops them in its order). Leaving the block stops
    them: first, for a design with ``stop_grace_s``, a graceful stop
    (``app.stopping``, the network still up); then the proxy resets every
    connection, so each side sees a dead peer at once and no close handshake
    can hold teardown up; then the tasks are cancelled and the clients'
    sockets aborted.
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

    async def __aexit__(self, *exc: Any) -> None:
        ctx, tasks = self.ctx, self.tasks
        ctx.stopping = True
        grace = self.design.stop_grace_s if tasks else 0
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
    flavours of a new connection's failure, the proxy applies by itself.)"""

    async def at(t: float) -> None:
        delay = t - ctx.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def act(item: Any) -> None:
        await at(item.start_s)
        if isinstance(item, Downtime):
            await server.stop(item.close_code)
            if item.end_s is not None:
                await at(item.end_s)
                await server.start()
        elif isinstance(item, Revoke):
            for client in (item.clients if item.clients is not None else range(clients)):
                ctx.auth.revoke(f"c{client}")
        else:
            proxy.onset(item)

    async def follow_listener() -> None:
        # The "refused" outage flavour: the proxy stops listening, then listens again.
        t = 0.0
        while (change := ctx.plan.next_listener_change(t)) is not None:
            t = change
            await at(t)
            await proxy.listen(ctx.plan.listening(t))

    async with asyncio.TaskGroup() as tg:
        for item in ctx.plan.schedule():
            tg.create_task(act(item), name=f"wslab nemesis {item.kind}")
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
    left_behind = [t for t in left if not t.get_name().startswith("wslab ")]
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
    base = get_scenario(scenario)
    if workload is not None and not isinstance(workload, Workload):
        raise ConfigError(f"workload must be a wslab.Workload, got {workload!r}")
    changes = {k: v for k, v in dict(
        workload=workload, faults=faults if faults is None or isinstance(faults, FaultPlan)
        else FaultPlan(faults), clients=clients, seed=seed, settle_s=settle_s,
        time_limit_s=time_limit_s, clock=clock).items() if v is not None}
    return the_design, (base.with_(**changes) if changes else base)


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
    finally:
        for logger in _CAPTURED:
            logger.removeHandler(log_capture)


async def _execute(design: Design, scenario: Scenario, ctx: RunContext,
                   progress: Callable[[float], None] | None) -> Run:
    """One run, in scopes: the server, the proxy in front of it, the clients; each
    scope's exit takes down what it made, innermost first (clients, then the
    network, then the server), and then whatever the design left running."""
    workload, wall_started = ctx.workload, time.perf_counter()
    up = {i: _Outbox() for i in range(scenario.clients)} if workload.produces_up else {}
    down = {i: _Outbox() for i in range(scenario.clients)} if workload.produces_down else {}
    outboxes = [*up.values(), *down.values()]
    server = LabServer(design, ctx, down)
    lags_s: list[float] = []
    try:
        async with (server as server_port,
                    FaultProxy(upstream_port=server_port, plan=scenario.faults, seed=scenario.seed,
                               t0=ctx.t0) as proxy,
                    _Clients(ctx, design, proxy, scenario.clients, up) as clients):
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
                clients.start()
                end_s = await _until_over(ctx, scenario, producers, sampler)
                nemesis.cancel()
                sampling.cancel()
                lag_watch.cancel()
                for outbox in outboxes:
                    outbox.close()
    finally:
        tasks_left = await _cancel_leftovers(ctx)
    run = Run(
        design=design.name, scenario=scenario.name, seed=scenario.seed,
        clients=scenario.clients, workload=workload, faults=scenario.faults,
        ledger=ctx.ledger, clock=scenario.clock, duration_s=ctx.now(), wall_s=time.perf_counter() - wall_started,
        end_s=end_s, planned_end_s=scenario.planned_s,
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
