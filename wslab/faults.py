"""Faults as plain data: what goes wrong, where, and when.

A fault is a frozen dataclass with a time window (``start_s`` from the start of
the run, ``duration_s`` or None for "until the run ends"), the direction it
applies to (``"up"`` client→server, ``"down"`` server→client, or ``"both"``) and
the clients it applies to (None for all). Nothing here touches a socket or
reads a clock: :class:`FaultPlan` decides, from the faults and a moment, what
the network does (:meth:`FaultPlan.network`, :meth:`FaultPlan.admission`),
how long a consumer takes (:meth:`FaultPlan.consumer_delay_s`) and what acts
at a moment (:meth:`FaultPlan.schedule`); the
:class:`~wslab.proxy.FaultProxy` and the lab's nemesis (:mod:`wslab.lab`)
carry those decisions out (the *nemesis* of Maelstrom and Jepsen).

Network faults, applied by the proxy to the bytes on the wire:

- :class:`Latency` (with jitter) and :class:`Bandwidth`: bytes arrive later.
- :class:`Cut`: every open connection is reset (RST) when the window starts,
  and new connections are reset at once while it lasts.
- :class:`BlackHole`: the proxy silently discards bytes and keeps both
  sockets open, like a NAT or load balancer that forgot the flow. A
  connection that was open during the window stays black-holed until it is
  closed; connections opened after the window work.
- :class:`Refuse`: new connections are closed at once; open ones are untouched.
- :class:`FrameFault`: drop, delay or duplicate the WebSocket frames that
  match a predicate (for example only acknowledgements, server→client).

Faults applied by the lab:

- :class:`ServerRestart`: the server stops (close code 1001, its memory lost)
  and starts again on the same port after ``duration_s``.
- :class:`SlowConsumer`: the receiving application on one side takes
  ``delay_s`` to process each message.
- :class:`Revoke`: the identity provider revokes some clients' sessions.

The outages (:data:`OUTAGES`: cut, black hole, server restart) are the faults
clients must come back from (``Run.recovery_s``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .errors import ConfigError
from .frames import Frame, data_frames

FaultDirection = Literal["up", "down", "both"]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True, kw_only=True)
class Fault:
    """Base of all faults: a window in time, a direction and a set of clients."""

    kind: ClassVar[str] = "fault"
    start_s: float = 0.0
    duration_s: float | None = None
    direction: FaultDirection = "both"
    clients: frozenset[int] | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check(
            isinstance(self.start_s, (int, float)) and self.start_s >= 0,
            f"{name}.start_s must be a number of seconds >= 0, got {self.start_s!r}",
        )
        _check(
            self.duration_s is None
            or (isinstance(self.duration_s, (int, float)) and self.duration_s >= 0),
            f"{name}.duration_s must be seconds >= 0 or None (until the end), got {self.duration_s!r}",
        )
        _check(
            self.direction in ("up", "down", "both"),
            f"{name}.direction must be 'up', 'down' or 'both', got {self.direction!r}",
        )
        if self.clients is not None:
            object.__setattr__(self, "clients", frozenset(self.clients))

    @property
    def end_s(self) -> float | None:
        return None if self.duration_s is None else self.start_s + self.duration_s

    def active(self, t: float) -> bool:
        """True while ``t`` (seconds from the start of the run) is in the window."""
        end = self.end_s
        return self.start_s <= t and (end is None or t < end)

    def applies(self, direction: str, client: int | None) -> bool:
        """True when the fault concerns this direction and this client."""
        if self.direction != "both" and self.direction != direction:
            return False
        return self.clients is None or client in self.clients

    def describe(self) -> str:
        """One line for a legend: what, where and when."""
        end = "end" if self.end_s is None else f"{self.end_s:g} s"
        where = "" if self.direction == "both" else f" {self.direction}"
        who = "" if self.clients is None else f" clients {sorted(self.clients)}"
        return f"{self.kind}{where}{who} {self.start_s:g} s–{end}"


@dataclass(frozen=True, kw_only=True)
class Latency(Fault):
    """Each chunk of bytes is delayed by ``delay_s`` ± ``jitter_s`` (order kept)."""

    kind: ClassVar[str] = "latency"
    delay_s: float = 0.05
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.delay_s >= 0, f"Latency.delay_s must be >= 0, got {self.delay_s!r}")
        _check(
            0 <= self.jitter_s <= self.delay_s,
            f"Latency.jitter_s must be between 0 and delay_s, got {self.jitter_s!r}",
        )


@dataclass(frozen=True, kw_only=True)
class Bandwidth(Fault):
    """At most ``bytes_per_s`` bytes per second go through, per connection."""

    kind: ClassVar[str] = "bandwidth"
    bytes_per_s: float = 100_000

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.bytes_per_s > 0, f"Bandwidth.bytes_per_s must be > 0, got {self.bytes_per_s!r}")


@dataclass(frozen=True, kw_only=True)
class Cut(Fault):
    """Reset every open connection; reset new ones while the window lasts."""

    kind: ClassVar[str] = "cut"


@dataclass(frozen=True, kw_only=True)
class BlackHole(Fault):
    """Discard bytes silently and keep the sockets open (a forgotten NAT flow)."""

    kind: ClassVar[str] = "black hole"


@dataclass(frozen=True, kw_only=True)
class Refuse(Fault):
    """Close new connections at once while the window lasts."""

    kind: ClassVar[str] = "refuse"


@dataclass(frozen=True, kw_only=True)
class ServerRestart(Fault):
    """Stop the server (state lost) and start it on the same port after ``duration_s``.

    With ``duration_s=None`` the server stays down until the run ends. The
    server closes its connections with ``close_code``: 1012 (service restart)
    by default, 1001 (going away) for a shutdown.
    """

    kind: ClassVar[str] = "server restart"
    close_code: int = 1012


@dataclass(frozen=True, kw_only=True)
class SlowConsumer(Fault):
    """The application on ``side`` takes ``delay_s`` to process each message."""

    kind: ClassVar[str] = "slow consumer"
    side: Literal["server", "client"] = "client"
    delay_s: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.side in ("server", "client"), f"SlowConsumer.side must be 'server' or 'client', got {self.side!r}")
        _check(self.delay_s >= 0, f"SlowConsumer.delay_s must be >= 0, got {self.delay_s!r}")

    def describe(self) -> str:
        return f"slow {self.side} ({self.delay_s * 1000:g} ms each)" + super().describe().removeprefix("slow consumer")


@dataclass(frozen=True, kw_only=True)
class Revoke(Fault):
    """At ``start_s`` the identity provider revokes the sessions of ``clients``
    (all when None): their tokens stop verifying and they get no new ones."""

    kind: ClassVar[str] = "revoke"


@dataclass(frozen=True, kw_only=True)
class FrameFault(Fault):
    """Drop, delay or duplicate WebSocket frames that ``match``.

    ``match`` takes a :class:`~wslab.frames.Frame` (payload unmasked) and
    returns True for frames to act on; by default every data frame. Each
    matching frame is acted on with ``probability`` (drawn from the run's seed).
    """

    kind: ClassVar[str] = "frame fault"
    action: Literal["drop", "delay", "duplicate"] = "drop"
    match: Callable[[Frame], bool] = field(default=data_frames)
    probability: float = 1.0
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            self.action in ("drop", "delay", "duplicate"),
            f"FrameFault.action must be 'drop', 'delay' or 'duplicate', got {self.action!r}",
        )
        _check(callable(self.match), f"FrameFault.match must be a function of a Frame, got {self.match!r}")
        _check(0 <= self.probability <= 1, f"FrameFault.probability must be in [0, 1], got {self.probability!r}")
        _check(self.delay_s >= 0, f"FrameFault.delay_s must be >= 0, got {self.delay_s!r}")

    def describe(self) -> str:
        return f"{self.action} frames ({self.probability:.0%}) " + super().describe().removeprefix("frame fault ")


@dataclass(frozen=True)
class FaultPlan:
    """The faults of one run, in the order given."""

    faults: tuple[Fault, ...] = ()

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        faults = tuple(faults)
        for fault in faults:
            if not isinstance(fault, Fault):
                raise ConfigError(f"a fault plan holds Fault objects, got {fault!r}")
        object.__setattr__(self, "faults", faults)

    def __iter__(self):
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def of(self, kind: type[Fault]) -> list[Fault]:
        return [f for f in self.faults if isinstance(f, kind)]

    def active(self, kind: type[Fault], t: float, direction: str, client: int | None) -> list:
        """The faults of ``kind`` in force at ``t`` for this direction and client."""
        return [
            f for f in self.faults
            if isinstance(f, kind) and f.active(t) and f.applies(direction, client)
        ]

    def has(self, kind: type[Fault], direction: str) -> bool:
        """True when any fault of ``kind`` ever concerns ``direction``."""
        return any(
            isinstance(f, kind) and f.direction in ("both", direction) for f in self.faults
        )

    def with_(self, *faults: Fault) -> "FaultPlan":
        """A plan with ``faults`` added at the end."""
        return FaultPlan((*self.faults, *faults))

    def outages(self) -> list[Fault]:
        """The faults clients must come back from (:data:`OUTAGES`)."""
        return [f for f in self.faults if isinstance(f, OUTAGES)]

    @property
    def last_end_s(self) -> float:
        """When the last bounded fault window ends (0 with none)."""
        ends = [f.end_s if f.end_s is not None else f.start_s for f in self.faults]
        return max(ends, default=0.0)

    # Decisions: what the faults do at a moment (pure; the proxy and the lab act on them).

    def network(self, t: float, direction: str, client: int | None) -> "NetworkEffect":
        """What the network does at ``t`` to bytes going ``direction`` on ``client``'s connection."""
        if not self.faults:
            return _CLEAR
        black_hole = False
        latencies: list[Latency] = []
        caps: list[float] = []
        frame_faults: list[FrameFault] = []
        for f in self.faults:
            if not (f.active(t) and f.applies(direction, client)):
                continue
            if isinstance(f, BlackHole):
                black_hole = True
            elif isinstance(f, Latency):
                latencies.append(f)
            elif isinstance(f, Bandwidth):
                caps.append(f.bytes_per_s)
            elif isinstance(f, FrameFault):
                frame_faults.append(f)
        return NetworkEffect(black_hole=black_hole, latencies=tuple(latencies),
                             bytes_per_s=min(caps, default=None), frame_faults=tuple(frame_faults))

    def admission(self, t: float, client: int | None) -> Literal["reset", "refused"] | None:
        """What happens at ``t`` to a new connection of ``client``: ``"reset"`` in a
        :class:`Cut`, ``"refused"`` under :class:`Refuse`, None when it goes through."""
        for kind, verdict in ((Cut, "reset"), (Refuse, "refused")):
            if self.active(kind, t, "up", client):
                return verdict  # type: ignore[return-value]
        return None

    def consumer_delay_s(self, t: float, side: str, client: int | None) -> float:
        """Seconds the application on ``side`` of ``client`` takes per message at ``t``
        (the :class:`SlowConsumer` delays in force, added up; 0 without any)."""
        return sum(
            f.delay_s for f in self.of(SlowConsumer)
            if f.side == side and f.active(t) and (f.clients is None or client in f.clients)
        )

    def downtimes(self) -> list["Downtime"]:
        """When the server is down: the :class:`ServerRestart` windows, merged where
        they overlap or touch (down from the first start to the last end)."""
        merged: list[Downtime] = []
        for f in sorted(self.of(ServerRestart), key=lambda f: f.start_s):
            last = merged[-1] if merged else None
            if last is not None and (last.end_s is None or f.start_s <= last.end_s):
                end = None if last.end_s is None or f.end_s is None else max(last.end_s, f.end_s)
                merged[-1] = Downtime(start_s=last.start_s, end_s=end, close_code=last.close_code)
            else:
                merged.append(Downtime(start_s=f.start_s, end_s=f.end_s, close_code=f.close_code))
        return merged

    def schedule(self) -> list["Fault | Downtime"]:
        """What acts at a moment, in plan order: each :class:`Cut`, :class:`BlackHole`
        and :class:`Revoke` (at its ``start_s``) and each :class:`Downtime` (in the
        place of its first :class:`ServerRestart`)."""
        downtimes = self.downtimes()
        out: list[Fault | Downtime] = []
        for f in self.faults:
            if isinstance(f, ServerRestart):
                down = next(d for d in downtimes if d.covers(f.start_s))
                if down not in out:
                    out.append(down)
            elif isinstance(f, (Cut, BlackHole, Revoke)):
                out.append(f)
        return out


# The faults clients must come back from: the connection is gone or dead.
OUTAGES: tuple[type[Fault], ...] = (Cut, BlackHole, ServerRestart)
# The faults the proxy applies to the bytes on the wire; the others are the lab's.
NETWORK_FAULTS: tuple[type[Fault], ...] = (Latency, Bandwidth, Cut, BlackHole, Refuse, FrameFault)


@dataclass(frozen=True, kw_only=True)
class Downtime:
    """The server down from ``start_s`` to ``end_s`` (None: until the run ends),
    closing its connections with ``close_code`` (:meth:`FaultPlan.downtimes`)."""

    kind: ClassVar[str] = "server restart"
    start_s: float
    end_s: float | None
    close_code: int

    def covers(self, t: float) -> bool:
        """True when ``t`` is in the window, its end included (where a touching window starts)."""
        return self.start_s <= t and (self.end_s is None or t <= self.end_s)


@dataclass(frozen=True, kw_only=True)
class NetworkEffect:
    """What the network does, at one moment, to the bytes of one direction of one
    connection (:meth:`FaultPlan.network`). The random draws are the caller's
    (the proxy's seeded ``random.Random``), so the effect stays plain data."""

    black_hole: bool = False
    latencies: tuple[Latency, ...] = ()
    bytes_per_s: float | None = None  # the tightest Bandwidth cap in force
    frame_faults: tuple[FrameFault, ...] = ()

    def delay_s(self, uniform: Callable[[float, float], float], *, after_s: float = 0.0) -> float:
        """One chunk's delay: ``after_s`` (a frame fault's own) plus each latency, its
        jitter drawn with ``uniform(a, b)``."""
        delay = after_s
        for f in self.latencies:
            delay += f.delay_s + (uniform(-f.jitter_s, f.jitter_s) if f.jitter_s else 0.0)
        return delay

    def frame_action(self, frame: Frame, chance: Callable[[], float]) -> FrameFault | None:
        """The frame fault that acts on ``frame``: the first that matches it and whose
        ``probability`` the draw ``chance()`` (uniform in [0, 1)) falls under; None for none."""
        for f in self.frame_faults:
            if f.match(frame) and chance() < f.probability:
                return f
        return None


_CLEAR = NetworkEffect()
