"""Run: everything one lab run recorded, and its summary."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .faults import BlackHole, FaultPlan
from .ledger import Ledger, percentile
from .observability import Metrics
from .workload import Workload


# Summary fields read from the machine rather than from lab time: the bytes in
# kernel socket queues when a sample is taken (the kernel's own pace decides some
# of them: a 200-client storm gave 1,196 or 1,486 under two CPU hogs, where every
# other field of every scenario was identical) and the real seconds a run took.
MACHINE_FIELDS = ("peak_buffered_bytes", "wall_s")


@dataclass(frozen=True)
class DesignFailure:
    """An exception raised by the design under test, caught by the lab."""

    t_s: float
    where: str  # "client 3", "server handler (client 3)", "task push_updates"
    error: str  # "ConnectionClosedError: no close frame received or sent"


@dataclass(frozen=True)
class CodeLine:
    """One frame of a traceback: where code was when an exception passed through it."""

    # "sample.py", "tests/test_causes.py"; a library's from its package root:
    # "websockets/asyncio/client.py"
    file: str
    line: int
    function: str
    code: str  # the line of source, stripped ("" when the file cannot be read)
    own: bool  # the design's code (not the standard library, an installed package or the lab)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" + (f" `{self.code}`" if self.code else "")


@dataclass(frozen=True)
class TaskException:
    """How one piece of the design's work ended, recorded the moment it ended:
    a task it started, its client coroutine, or its handler for one connection.

    Recorded whether or not the design later retrieves the exception (an
    ``await``, ``gather(return_exceptions=True)``, a ``cancel()`` of the done
    task): ``run.errors`` holds only the failures nobody handled, this holds
    them all. A task cancelled is not recorded (cancellation is not a
    failure); a task that *returned* after it was cancelled is, with
    ``swallowed_cancel`` (it caught ``CancelledError`` and went on).
    """

    t_s: float
    side: str  # "client" or "server": whose context started the work
    client_id: int | None  # the lab client (the server side: the client of the connection)
    work: str  # "client", "server handler", or a task's coroutine: "Sensor.run"
    error: str  # "InvalidMessage: did not receive a valid HTTP response"
    # The exception's classes, most derived first: "websockets.exceptions.InvalidMessage", ...
    kinds: tuple[str, ...] = ()
    # The close code received (ConnectionClosed) or the HTTP status (InvalidStatus).
    code: int | None = None
    stack: tuple[CodeLine, ...] = ()  # the traceback, outermost frame first
    swallowed_cancel: bool = False
    # How many entries ``Run.task_starts`` had when it ended: the later ones started after.
    starts_before: int = 0

    @property
    def kind(self) -> str:
        """The exception's class name: ``"InvalidMessage"``."""
        return self.kinds[0].rsplit(".", 1)[-1] if self.kinds else "?"

    @property
    def where(self) -> CodeLine | None:
        """The innermost frame in the design's own code: the line to look at."""
        return next((frame for frame in reversed(self.stack) if frame.own), None)

    def is_a(self, qualified_name: str) -> bool:
        """Whether the exception is an instance of the class ``qualified_name``
        (``"websockets.exceptions.InvalidHandshake"``, ``"builtins.OSError"``)."""
        return qualified_name in self.kinds


@dataclass
class Run:
    """The record of one run: the ledger, samples over time, faults, errors.

    ``samples`` is a list of dicts taken every ``sample_interval_s``:
    ``t``, ``connected`` (clients connected through the proxy),
    ``server_connections``, ``client_buffer`` / ``server_buffer`` /
    ``proxy_buffer`` (bytes waiting on those sockets: write buffers and
    kernel queues), ``client_recv_queue`` / ``server_recv_queue``
    (frames read and not yet consumed), ``producer_backlog`` (messages produced
    that the design has not taken yet) and ``gauges`` (what the design reported).
    ``connections`` lists ``(t, client, event)`` seen by the proxy (accept,
    open, close, reset, upstream refused, a new connection failed in an outage
    flavour: reset_in_handshake, http_503, silent, refused; and, with client
    None, not listening / listening around a refused turn); ``server_opens`` lists
    ``(t, client)`` for every connection the server handler saw;
    ``client_events`` lists ``(t, client, "open" | "close")`` as each client's
    own connection objects saw them (teardown excluded).
    ``errors`` are the design's failures nobody handled; ``task_exceptions``
    (:class:`TaskException`) how every piece of its work that failed ended,
    handled or not, and ``task_starts`` lists ``(t, side, client, work)`` for
    every task the design started (both until the run stopped):
    :mod:`wslab.causes` reads them.

    Every time is lab time, in the run's ``clock``. In virtual time the summary
    is a function of (design, scenario, seed, clients, clock), apart from the
    fields in :data:`MACHINE_FIELDS`.
    """

    design: str
    scenario: str
    seed: int
    clients: int
    workload: Workload
    faults: FaultPlan
    ledger: Ledger
    clock: str = "virtual"  # which clock measured this run (wslab.clock)
    duration_s: float = 0.0  # lab seconds, from the start to the end of teardown
    wall_s: float = 0.0  # real seconds the run took (depends on the machine)
    end_s: float = 0.0
    # The scenario's planned end (its settle window's end; in real time stretched,
    # Scenario.late_after_s): a message first delivered after it is late. A run
    # may go on past it, while messages are in
    # flight, up to its horizon (``Scenario.horizon_s``).
    planned_end_s: float = math.inf
    # How the design used the lab's identity provider (lesson 09): tokens it asked
    # for (``app.fetch_token``) and tokens it had checked (``app.verify_token``).
    tokens_issued: int = 0
    tokens_verified: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    connections: list[tuple[float, int | None, str]] = field(default_factory=list)
    server_opens: list[tuple[float, int | None]] = field(default_factory=list)
    client_events: list[tuple[float, int, str]] = field(default_factory=list)
    errors: list[DesignFailure] = field(default_factory=list)
    task_exceptions: list[TaskException] = field(default_factory=list)
    task_starts: list[tuple[float, str, int | None, str]] = field(default_factory=list)
    tasks_left: int = 0
    frames: dict[str, int] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    logs: list[dict[str, Any]] = field(default_factory=list)
    # (t_s, client, blocked_s) for each send(message) a client object was called
    # with: when, and how long it kept the producer waiting (wslab.contract).
    send_blocked: list[tuple[float, int, float]] = field(default_factory=list)
    # How late (s) each wake-up of the lab's lag monitor came, every
    # wslab.lab.LAG_INTERVAL_S of lab time: the event loop's lag.
    loop_lags_s: list[float] = field(default_factory=list)
    # The keepalive ping timeouts (s) the run's connections used, smallest first.
    ping_timeouts_s: list[float] = field(default_factory=list)

    def log_lines(self) -> str:
        """What the design logged during the run, one JSON object per line."""
        return "\n".join(json.dumps(entry, default=str) for entry in self.logs)

    @property
    def reconnects(self) -> int:
        """Connections the server saw beyond the first of each client."""
        per_client: dict[int | None, int] = {}
        for _, client in self.server_opens:
            per_client[client] = per_client.get(client, 0) + 1
        return sum(max(0, n - 1) for n in per_client.values())

    @property
    def connect_attempts(self) -> int:
        """Connections the proxy accepted, failed ones included: the work a storm costs."""
        return sum(1 for _, _, event in self.connections if event == "accept")

    def attempts_per_bucket(self, bucket_s: float = 0.01, after_s: float = 0.0) -> list[int]:
        """Connection attempts the proxy accepted in each ``bucket_s`` bucket from
        ``after_s`` on: the shape of a reconnect storm (lesson 03)."""
        counts: dict[int, int] = {}
        for t, _, event in self.connections:
            if event == "accept" and t >= after_s:
                key = int((t - after_s) / bucket_s)
                counts[key] = counts.get(key, 0) + 1
        return [counts.get(i, 0) for i in range(max(counts, default=-1) + 1)]

    @property
    def recovery_s(self) -> float | None:
        """Seconds from the end of the last outage (:data:`~wslab.faults.OUTAGES`:
        cut, black hole, restart) until every client that was connected before it
        had connected again; None when there was no outage, nan when some client
        never came back."""
        outages = self.faults.outages()
        if not outages:
            return None
        first_start = min(f.start_s for f in outages)
        last_end = max(f.end_s if f.end_s is not None else self.end_s for f in outages)
        before = {c for t, c in self.server_opens if t < first_start}
        after: dict[int | None, float] = {}  # each client's first connection since the outage
        for t, c in self.server_opens:
            if t > first_start and c in before and c not in after:
                after[c] = t
        if not before or set(after) != before:
            return math.nan
        return round(max(0.0, max(after.values()) - last_end), 4)

    @property
    def detection_s(self) -> float | None:
        """Seconds from the start of the first black hole until every client that
        had a connection open then had closed it on its own side (it noticed the
        dead peer); None when there was no black hole, nan when some client never
        noticed before the run ended."""
        holes = self.faults.of(BlackHole)
        if not holes:
            return None
        start = min(f.start_s for f in holes)
        open_now: dict[int, int] = {}
        noticed: dict[int, float] = {}
        for t, client, event in self.client_events:
            if t < start:
                open_now[client] = open_now.get(client, 0) + (1 if event == "open" else -1)
            elif event == "close" and client not in noticed:
                noticed[client] = t
        watched = {c for c, n in open_now.items() if n > 0}
        if not watched:
            return None
        if not watched <= set(noticed):
            return math.nan
        return round(max(noticed[c] for c in watched) - start, 4)

    @property
    def loop_lag_ms(self) -> dict[str, float | None]:
        """The event loop's lag, p50 / p99 / max in ms (None without a reading).
        In virtual time only busy turns and blocking calls make it; in CPU-charged
        time every computation of the run does (the design's and the lab's)."""
        lags = sorted(self.loop_lags_s)
        return {name: round(percentile(lags, q) * 1000, 3) if lags else None
                for name, q in (("p50", 50), ("p99", 99), ("max", 100))}

    @property
    def overloaded(self) -> str | None:
        """Why the run's timings cannot be trusted, or None: the event loop once lagged
        longer than the smallest keepalive ping timeout of its connections, so a
        pong that came in time could be read too late and a live connection be
        dropped. Then a timing failure may be the lab's, not the design's
        (:mod:`wslab.checkers` answers "unknown"). A run with no keepalive has no
        such bound."""
        if not self.loop_lags_s or not self.ping_timeouts_s:
            return None
        worst, bound = max(self.loop_lags_s), min(self.ping_timeouts_s)
        if worst <= bound:
            return None
        return (f"the lab was overloaded: its event loop lagged up to {worst * 1000:.0f} ms, "
                f"past the {bound * 1000:g} ms keepalive ping timeout")

    def summary(self) -> dict[str, Any]:
        """The numbers that say how the design did (see :mod:`wslab.ledger`)."""
        out = {"design": self.design, "scenario": self.scenario, "seed": self.seed,
               "clients": self.clients, "clock": self.clock}
        out.update(self.ledger.summary(late_after_s=self.planned_end_s))
        out["peak_buffered_bytes"] = max(
            (s["client_buffer"] + s["server_buffer"] + s["proxy_buffer"]
             for s in self.samples), default=0)
        out["reconnects"] = self.reconnects
        out["connect_attempts"] = self.connect_attempts
        recovery = self.recovery_s
        out["recovery_s"] = recovery
        out["detection_s"] = self.detection_s
        out["errors"] = len(self.errors)
        out["tasks_left"] = self.tasks_left
        out["peak_send_blocked_s"] = max((b for _, _, b in self.send_blocked), default=None)
        out["loop_lag_ms"] = self.loop_lag_ms
        out["overloaded"] = self.overloaded is not None
        out["duration_s"] = round(self.duration_s, 3)
        out["wall_s"] = round(self.wall_s, 3)
        return out

    # Display -------------------------------------------------------------

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<Run {self.design} × {self.scenario} (seed {self.seed}): sent {s['sent']}, "
                f"delivered {s['delivered']}, lost {s['lost']}, late {s['late']}, "
                f"duplicated {s['duplicated']}, "
                f"out of order {s['out_of_order']}, peak queue {s['peak_queue']}>")

    def table(self) -> list[tuple[str, str]]:
        """The summary as (label, value) rows for a person to read."""
        s = self.summary()
        lat = s["latency_ms"]
        fmt = lambda v: "–" if isinstance(v, float) and math.isnan(v) else f"{v:g}"  # noqa: E731
        return [
            ("design × scenario", f"{s['design']} × {s['scenario']} (seed {s['seed']}, {s['clients']} client{'s' if s['clients'] != 1 else ''})"),
            ("sent", str(s["sent"])),
            ("delivered", str(s["delivered"])),
            ("lost", str(s["lost"])),
            ("late (delivered after the planned end)", str(s["late"]) + (
                "" if not s["late"] else
                f", {s['late_s']['p50']:g} s after production (median), up to {s['late_s']['max']:g} s")),
            ("rejected (refused explicitly)", str(s["rejected"])),
            ("duplicated", str(s["duplicated"])),
            ("unexpected", str(s["unexpected"])),
            ("out of order", str(s["out_of_order"])),
            ("latency p50 / p95 / p99 / max (ms)",
             " / ".join(fmt(lat[k]) for k in ("p50", "p95", "p99", "max"))),
            ("peak queue (messages)", str(s["peak_queue"])),
            ("peak buffered (bytes)", f"{s['peak_buffered_bytes']:,}"),
            ("peak waiting for the design (messages)",
             f"{s['peak_backlog']}: {s['peak_backlog_in_design']} in the design, "
             f"{s['peak_backlog_not_taken']} produced and not taken"),
            *([("longest send() wait (s)", f"{s['peak_send_blocked_s']:.3f}")]
              if s["peak_send_blocked_s"] is not None else []),
            ("reconnects", str(s["reconnects"])),
            ("connection attempts", str(s["connect_attempts"])),
            ("dead peer noticed after (s)", "–" if s["detection_s"] is None else
             "never" if math.isnan(s["detection_s"]) else f"{s['detection_s']:.2f}"),
            ("back after the outage (s)", "–" if s["recovery_s"] is None else
             "never" if math.isnan(s["recovery_s"]) else f"{s['recovery_s']:.2f}"),
            ("event loop lag p50 / p99 / max (ms)",
             " / ".join("–" if s["loop_lag_ms"][k] is None else f"{s['loop_lag_ms'][k]:g}"
                        for k in ("p50", "p99", "max"))
             + (" (overloaded: past the keepalive's ping timeout)" if s["overloaded"] else "")),
            ("errors in the design", str(s["errors"])),
            ("tasks left at teardown", str(s["tasks_left"])),
            ("duration (lab s, clock)", f"{s['duration_s']:.2f} ({s['clock']})"),
            ("real time taken (s)", f"{s['wall_s']:.2f}"),
        ]

    def text(self) -> str:
        rows = self.table()
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self.table()
        )
        return f"<table>{rows}</table>"
