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
- When the run returns or raises, nothing it started is left: the clients'
  tasks are cancelled, the server and the proxy are closed with all their
  sockets, and every task the design started (tracked through the event
  loop's task factory) is cancelled and awaited. A design whose tasks ignore
  cancellation makes the run raise :class:`~wslab.errors.DesignHangError`.
- An exception in the design is a result, not a crash: it is recorded in
  ``run.errors``, as are the exceptions of fire-and-forget tasks nobody
  awaited.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import traceback
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, serve
from websockets.protocol import State

from .contract import ClientApp, Design, ServerApp, _current_client, _Outbox
from .designs import get_design
from .errors import ConfigError, DesignHangError, RunTimeoutError
from .auth import TokenAuthority
from .clock import clock_of, run_in_lab_loop, run_in_lab_loop_sync
from .faults import BlackHole, Cut, FaultPlan, Revoke, ServerRestart, SlowConsumer
from .ledger import Ledger
from .observability import Metrics, log_fields
from .proxy import BACKLOG, HOST, FaultProxy, queued_bytes
from .run import DesignFailure, Run
from .scenarios import Scenario, get_scenario
from .workload import Workload, make_message

TEARDOWN_GRACE_S = 2.0
WALL_LIMIT_S = 120.0  # real seconds, at least, before a run that does not end is stopped
SAMPLE_INTERVAL_S = 0.05
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

    def __init__(self, ctx: "_RunContext") -> None:
        super().__init__(logging.DEBUG)
        self.ctx = ctx

    def emit(self, record: logging.LogRecord) -> None:
        if _current_run.get() is self.ctx:
            self.ctx.logs.append({"t": round(self.ctx.now(), 4), **log_fields(record)})


_current_run: contextvars.ContextVar["_RunContext | None"] = contextvars.ContextVar(
    "wslab_current_run", default=None
)


@dataclass
class _RunContext:
    """The state of one run that the applications and the lab share."""

    workload: Workload
    plan: FaultPlan
    t0: float
    seed: int = 0
    auth: TokenAuthority = field(default_factory=lambda: TokenAuthority(b"wslab", 3600.0))
    ledger: Ledger = field(default_factory=Ledger)
    gauges: dict[tuple[str, int | None], float] = field(default_factory=dict)
    errors: list[DesignFailure] = field(default_factory=list)
    tasks: set[asyncio.Task] = field(default_factory=set)
    failed_tasks: list[tuple[float, asyncio.Task]] = field(default_factory=list)
    stopping: bool = False  # the run is over: closes from now on are the lab's doing
    tearing_down: bool = False
    metrics: Metrics = field(default_factory=Metrics)
    logs: list[dict] = field(default_factory=list)
    client_events: list[tuple[float, int, str]] = field(default_factory=list)
    consumer_due: dict[tuple[str, int | None], float] = field(default_factory=dict)

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.t0

    def record_client_event(self, client_id: int, event: str) -> None:
        """A client connection opened or closed on the client's side (not at teardown)."""
        if not self.stopping:
            self.client_events.append((round(self.now(), 6), client_id, event))

    def adopt(self, task: asyncio.Task) -> None:
        """Own a task started during the run; its failure is recorded, never lost."""
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        # Not task.exception() here: that would mark it retrieved. Whether anybody
        # (a TaskGroup, an await) retrieves it is decided by the end of the run.
        if not task.cancelled() and not self.tearing_down:
            self.failed_tasks.append((self.now(), task))

    def record_unretrieved(self) -> None:
        """Record the exceptions of tasks that nobody awaited (fire and forget)."""
        for t, task in self.failed_tasks:
            if getattr(task, "_log_traceback", False):
                exc = task.exception()  # now retrieved: asyncio will not log it at exit
                text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                coro = task.get_coro()
                where = f"task {getattr(coro, '__qualname__', task.get_name())} (never awaited)"
                self.errors.append(DesignFailure(round(t, 4), where, text))
        self.failed_tasks.clear()
        self.errors.sort(key=lambda e: e.t_s)

    def fail(self, where: str, exc: BaseException) -> None:
        """Record an exception of the design (not those the lab causes at teardown)."""
        if self.tearing_down:
            return
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.errors.append(DesignFailure(round(self.now(), 4), where, text))

    async def consume_delay(self, side: str, client_id: int | None) -> None:
        """Hold a message for the SlowConsumer delays active on this side.

        Each application is one consumer with a schedule: a message that comes
        while (or just after) the previous one was being handled starts when that
        one was due to finish, not when the event loop got round to it. So a
        consumer of "one per 4 ms" handles 250 per second on average even on a
        loaded machine, where every sleep overshoots a little.
        """
        t = self.now()
        delay = sum(
            f.delay_s for f in self.plan.of(SlowConsumer)
            if f.side == side and f.active(t) and (f.clients is None or client_id in f.clients)
        )
        if delay:
            key = (side, client_id)
            due = self.consumer_due.get(key, -1.0)
            start = due if t - due < delay else t  # back to back: catch up with the schedule
            self.consumer_due[key] = start + delay
            await asyncio.sleep(max(0.0, start + delay - t))


# Task tracking: every task created while a run is current belongs to that run.
# Each lab loop gets the factory once (lab loops are the lab's own; it is never removed).


def _track_tasks(loop: asyncio.AbstractEventLoop) -> None:
    if getattr(loop, "wslab_tracks_tasks", False):
        return
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        ctx = _current_run.get()
        if ctx is not None:
            ctx.adopt(task)
        return task

    loop.set_task_factory(factory)
    loop.wslab_tracks_tasks = True  # type: ignore[attr-defined]


class _LabServer:
    """The design's server: started, stopped and restarted by the lab."""

    def __init__(self, design: Design, ctx: _RunContext, down: dict[int, _Outbox]) -> None:
        self.design, self.ctx, self.down = design, ctx, down
        self.port = 0
        self.server: Server | None = None
        self.opens: list[tuple[float, int | None]] = []
        self.state: dict = {}
        self.store: dict = {}  # durable: survives restarts
        self.outages = 0  # restart windows in force (they may overlap)
        self.live: set[Any] = set()  # server connections not known to be closed

    async def start(self) -> int:
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
        self.live = {c for c in self.live if c.state is not State.CLOSED}

    async def _handle(self, websocket: Any) -> None:
        match = _PATH.match(websocket.request.path)
        client_id = int(match.group(1)) if match else None
        self.opens.append((round(self.ctx.now(), 6), client_id))
        self.live = {c for c in self.live if c.state is not State.CLOSED} | {websocket}
        app = ServerApp(self.ctx, client_id, self.down.get(client_id), self.state, self.store)
        try:
            await self.design.handler(websocket, app)
        except Exception as exc:
            self.ctx.fail(f"server handler (client {client_id})", exc)
            raise


async def _produce(ctx: _RunContext, outbox: _Outbox, prefix: str) -> None:
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


async def _nemesis(ctx: _RunContext, proxy: FaultProxy, server: _LabServer, clients: int) -> None:
    """Apply the faults that act at a moment (cut, black hole, restart)."""

    async def at(t: float) -> None:
        delay = t - ctx.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def act(fault: Any) -> None:
        await at(fault.start_s)
        if isinstance(fault, Cut):
            proxy.cut(fault.clients)
        elif isinstance(fault, BlackHole):
            proxy.black_hole(fault.direction, fault.clients)
        elif isinstance(fault, Revoke):
            for client in (fault.clients if fault.clients is not None else range(clients)):
                ctx.auth.revoke(f"c{client}")
        elif isinstance(fault, ServerRestart):
            # Overlapping windows: down from the first start to the last end.
            server.outages += 1
            if server.outages == 1:
                await server.stop(fault.close_code)
            if fault.duration_s is not None:
                await at(fault.start_s + fault.duration_s)
                server.outages -= 1
                if server.outages == 0:
                    await server.start()

    async with asyncio.TaskGroup() as tg:
        for fault in ctx.plan:
            if isinstance(fault, (Cut, BlackHole, ServerRestart, Revoke)):
                tg.create_task(act(fault), name=f"wslab nemesis {fault.kind}")


def _sample(ctx: _RunContext, proxy: FaultProxy, server: _LabServer,
            apps: list[ClientApp], outboxes: list[_Outbox]) -> dict[str, Any]:
    def frames(conn: Any) -> int:
        messages = getattr(conn, "recv_messages", None)
        return len(messages.frames) if messages is not None else 0

    for app in apps:  # forget connections that are gone: reconnections add new ones
        app._connections = {c for c in app._connections
                            if getattr(c, "transport", None) is None or not c.transport.is_closing()}
    client_conns = [c for app in apps for c in list(app._connections)]
    server_conns = list(server.server.connections) if server.server is not None else []
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
    but finite, for a design that blocks the loop or never lets lab time move."""
    return max(WALL_LIMIT_S, scenario.time_limit_s + 4 * TEARDOWN_GRACE_S)


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
    _track_tasks(loop)
    ctx = _RunContext(workload=chosen.workload, plan=chosen.faults, t0=loop.time(),
                      seed=chosen.seed,
                      auth=TokenAuthority(f"wslab-{chosen.seed}".encode(), chosen.token_ttl_s))
    token = _current_run.set(ctx)
    log_capture = _LogCapture(ctx)
    for logger in _CAPTURED:
        logger.addHandler(log_capture)
    try:
        # The body runs in a task of its own so that the run's context (and
        # the tasks that inherit it) never leaks into the caller's.
        body = asyncio.ensure_future(_execute(the_design, chosen, ctx, progress))
        body.set_name("wslab run")
    finally:
        _current_run.reset(token)
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


async def _execute(design: Design, scenario: Scenario, ctx: _RunContext,
                   progress: Callable[[float], None] | None) -> Run:
    workload, wall_started = ctx.workload, time.perf_counter()
    up = {i: _Outbox() for i in range(scenario.clients)} if workload.produces_up else {}
    down = {i: _Outbox() for i in range(scenario.clients)} if workload.produces_down else {}
    server = _LabServer(design, ctx, down)
    proxy = FaultProxy(upstream_port=0, plan=scenario.faults, seed=scenario.seed, t0=ctx.t0)
    samples: list[dict[str, Any]] = []
    apps: list[ClientApp] = []
    client_tasks: list[asyncio.Task] = []
    planned_s = scenario.planned_s
    end_s = 0.0
    try:
        proxy.upstream_port = await server.start()
        port = await proxy.start()
        apps = [ClientApp(ctx, i, f"ws://{HOST}:{port}/c/{i}", up.get(i))
                for i in range(scenario.clients)]
        async with asyncio.TaskGroup() as lab:
            producers = [
                lab.create_task(_produce(ctx, outbox, f"{prefix}{i}"), name=f"wslab producer {prefix}{i}")
                for prefix, outboxes_of in (("u", up), ("d", down))
                for i, outbox in outboxes_of.items()
            ]
            nemesis = lab.create_task(_nemesis(ctx, proxy, server, scenario.clients), name="wslab nemesis")
            for app in apps:
                client_tasks.append(asyncio.create_task(_client_main(ctx, design, app),
                                                        name=f"wslab client {app.client_id}"))
            # Drive: until everything is accounted for, or the settle window ends.
            drive_until = max(workload.production_s, scenario.faults.last_end_s)
            outboxes = [*up.values(), *down.values()]
            while True:
                samples.append(_sample(ctx, proxy, server, apps, outboxes))
                now = ctx.now()
                if progress is not None:
                    progress(min(1.0, now / planned_s) if planned_s else 1.0)
                produced_all = all(p.done() for p in producers)
                if now >= drive_until and produced_all and (
                        ctx.ledger.outstanding == 0 or now >= planned_s):
                    break
                await asyncio.sleep(SAMPLE_INTERVAL_S)
            end_s = ctx.now()
            nemesis.cancel()
            for outbox in outboxes:
                outbox.close()
    finally:
        tasks_left = await _teardown(ctx, design, server, proxy, apps, client_tasks)
    run = Run(
        design=design.name, scenario=scenario.name, seed=scenario.seed,
        clients=scenario.clients, workload=workload, faults=scenario.faults,
        ledger=ctx.ledger, clock=scenario.clock, duration_s=ctx.now(), wall_s=time.perf_counter() - wall_started,
        end_s=end_s,
        samples=samples, connections=list(proxy.events), server_opens=server.opens, client_events=ctx.client_events,
        errors=ctx.errors, tasks_left=tasks_left, metrics=ctx.metrics, logs=ctx.logs,
        frames={"dropped": proxy.frames_dropped, "delayed": proxy.frames_delayed,
                "duplicated": proxy.frames_duplicated},
    )
    if progress is not None:
        progress(1.0)
    return run


async def _client_main(ctx: _RunContext, design: Design, app: ClientApp) -> None:
    _current_client.set(app)
    try:
        await design.client(app)
    except Exception as exc:
        ctx.fail(f"client {app.client_id}", exc)


async def _teardown(ctx: _RunContext, design: Design, server: _LabServer, proxy: FaultProxy,
                    apps: list[ClientApp], client_tasks: list[asyncio.Task]) -> int:
    """Stop everything the run started; return how many tasks the design left behind.

    First, for a design with ``stop_grace_s``, a graceful stop (``app.stopping``).
    Then the proxy: resetting every connection makes each side see a dead peer
    at once, so no close handshake can hold teardown up.
    """
    ctx.stopping = True
    grace = design.stop_grace_s if client_tasks else 0
    if grace:
        # A graceful stop first: the network is still up, the design may flush.
        for app in apps:
            app.stopping.set()
        await asyncio.wait(client_tasks, timeout=grace)
    ctx.tearing_down = True
    current = asyncio.current_task()
    await proxy.close()
    for task in client_tasks:
        task.cancel()
    if client_tasks:
        await asyncio.wait(client_tasks, timeout=TEARDOWN_GRACE_S)
    for app in apps:
        for conn in list(app._connections):
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abort()
    await server.stop(1001)
    # Whatever the design started and did not finish: cancel it, then wait.
    # (Tasks the design left running after its client and server stopped.)
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
