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
  and new connections fail while it lasts, in the cut's outage flavours.
- :class:`BlackHole`: the proxy silently discards bytes and keeps both
  sockets open, like a middlebox that lost the flow's state (a NAT that
  rebooted or failed over, a route that changed) while it was in use. A
  connection that was open during the window stays black-holed until it is
  closed; connections opened after the window work.
- :class:`IdleTimeout`: a NAT or load balancer that forgets a flow no byte
  crossed, either way, for ``idle_s``: from then on that connection is
  black-holed as above. Any byte keeps the flow, WebSocket pings and pongs
  included.
- :class:`Refuse`: new connections fail (in its flavours); open ones are untouched.
- :class:`FrameFault`: drop, delay or duplicate the WebSocket frames that
  match a predicate (for example only acknowledgements, server→client).

Faults applied by the lab:

- :class:`ServerRestart`: the server stops (close code 1012, its memory lost)
  and starts again on the same port after ``duration_s``. Any number of
  restart windows may overlap or follow each other back to back: the server is
  down over their union (:meth:`FaultPlan.downtimes` merges windows that
  overlap or touch), and the lab carries the downtimes out one after another,
  each stop bounded by its downtime, so the server is back at each window's end.
- :class:`SlowConsumer`: the receiving application on one side takes
  ``delay_s`` to process each message.
- :class:`Revoke`: the identity provider revokes some clients' sessions.

The outages (:data:`OUTAGES`: cut, black hole, server restart) are the faults
clients must come back from (``Run.recovery_s``). An idle timeout is not one:
it has no moment of its own, each idle connection dies when its idleness says.

Outage flavours (:data:`FLAVOURS`, lesson 03): how a new connection fails
while a :class:`Cut`, :class:`ServerRestart` or :class:`Refuse` lasts, as a
client meets it. ``"refused"``: nothing listens, ``connect()`` raises
``ConnectionRefusedError`` (an OSError); ``"reset_in_handshake"`` (the
default): TCP is accepted and reset after the upgrade request, websockets
raises ``InvalidMessage``; ``"http_503"``: a load balancer answers ``503
Service Unavailable``, websockets raises ``InvalidStatus``; ``"silent"``: TCP
is accepted and nothing ever answers, until the client's ``open_timeout``
raises ``TimeoutError``. A fault states its flavours (``flavours``), which take
turns every ``flavour_s``; :attr:`FaultPlan.outage_flavours` lists a plan's.
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


# How a new connection fails during an outage, as a client meets it (lesson 03).
OutageFlavour = Literal["refused", "reset_in_handshake", "http_503", "silent"]
# Each flavour and what a websockets client sees of it, for a person to read.
FLAVOURS: dict[str, str] = {
    "refused": "connection refused: nothing listens (OSError: ConnectionRefusedError)",
    "reset_in_handshake": "TCP accepted, then reset after the upgrade request (InvalidMessage)",
    "http_503": "a load balancer answers 503 Service Unavailable and closes (InvalidStatus)",
    "silent": "TCP accepted, then no answer at all (TimeoutError once open_timeout fires)",
}
FLAVOUR_S = 0.1  # how long each flavour of an outage lasts before the next one


@dataclass(frozen=True, kw_only=True)
class NewConnectionFault(Fault):
    """A fault that fails new connections while its window lasts, in ``flavours``.

    The flavours take turns, each for ``flavour_s``, in the order given and
    cycling from ``start_s``: with ``("refused", "http_503")`` and 0.1 s, a
    connection attempt in the first 0.1 s is refused, one in the next 0.1 s is
    answered 503, and so on. ``"refused"`` closes the proxy's listening socket,
    which every client shares, so it is only for a fault of every client
    (``clients=None``). See :data:`FLAVOURS`.
    """

    flavours: tuple[OutageFlavour, ...] = ("reset_in_handshake",)
    flavour_s: float = FLAVOUR_S

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if isinstance(self.flavours, str):
            object.__setattr__(self, "flavours", (self.flavours,))
        object.__setattr__(self, "flavours", tuple(self.flavours))
        _check(len(self.flavours) > 0 and all(f in FLAVOURS for f in self.flavours),
               f"{name}.flavours must name one or more of {', '.join(FLAVOURS)}, got {self.flavours!r}")
        _check(isinstance(self.flavour_s, (int, float)) and self.flavour_s > 0,
               f"{name}.flavour_s must be seconds > 0, got {self.flavour_s!r}")
        _check("refused" not in self.flavours or self.clients is None,
               f"{name}: the 'refused' flavour closes the proxy's listening socket for every "
               f"client; give clients=None, or another flavour for clients {sorted(self.clients or ())}")

    def flavour(self, t: float) -> OutageFlavour | None:
        """The flavour a new connection meets at ``t``; None outside the window."""
        if not self.active(t):
            return None
        # The epsilon puts a moment computed as a phase boundary in the phase it starts.
        phase = int((t - self.start_s) / self.flavour_s + 1e-9)
        return self.flavours[phase % len(self.flavours)]

    def describe_flavours(self) -> str:
        """The flavours in words: "new connections: refused, http_503, each 0.1 s in turn"."""
        turns = f", each {self.flavour_s:g} s in turn" if len(self.flavours) > 1 else ""
        return f"new connections: {', '.join(self.flavours)}{turns}"


@dataclass(frozen=True, kw_only=True)
class Cut(NewConnectionFault):
    """Reset every open connection; fail new ones (in ``flavours``) while the window lasts."""

    kind: ClassVar[str] = "cut"


@dataclass(frozen=True, kw_only=True)
class BlackHole(Fault):
    """Discard bytes silently and keep the sockets open: a middlebox that lost
    the flow's state while it was in use (a NAT reboot or failover, a route change)."""

    kind: ClassVar[str] = "black hole"


@dataclass(frozen=True, kw_only=True)
class IdleTimeout(Fault):
    """A NAT or load balancer that forgets a flow left idle for ``idle_s`` seconds.

    While the window lasts, a connection that no byte crossed, in either
    direction, for ``idle_s`` is forgotten: from then on, for as long as the
    connection lives, its bytes are discarded both ways and neither side is
    told (no FIN, no reset), as under a :class:`BlackHole`. Any byte is
    activity, WebSocket pings and pongs included: a keepalive that pings more
    often than every ``idle_s`` keeps the flow. Idleness counts from the
    connection's last byte or from ``start_s``, whichever is later
    (:meth:`FaultPlan.forgotten_at`). It watches both directions together, so
    ``direction`` must stay ``"both"``.
    """

    kind: ClassVar[str] = "idle timeout"
    idle_s: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(isinstance(self.idle_s, (int, float)) and self.idle_s > 0,
               f"IdleTimeout.idle_s must be seconds > 0, got {self.idle_s!r}")
        _check(self.direction == "both",
               "IdleTimeout.direction must be 'both': a byte either way keeps the flow, "
               f"got {self.direction!r}")

    def describe(self) -> str:
        return f"idle timeout ({self.idle_s:g} s)" + super().describe().removeprefix("idle timeout")


@dataclass(frozen=True, kw_only=True)
class Refuse(NewConnectionFault):
    """Fail new connections (in ``flavours``) while the window lasts; open ones are untouched."""

    kind: ClassVar[str] = "refuse"


@dataclass(frozen=True, kw_only=True)
class ServerRestart(NewConnectionFault):
    """Stop the server (state lost) and start it on the same port after ``duration_s``.

    With ``duration_s=None`` the server stays down until the run ends. The
    server closes its connections with ``close_code``: 1012 (service restart)
    by default, 1001 (going away) for a shutdown. While it is down, new
    connections fail in ``flavours``: what the proxy (the network, or a load
    balancer in front) makes of a server that is not there.
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

    def admission(self, t: float, client: int | None) -> OutageFlavour | None:
        """How a new connection of ``client`` fails at ``t``: the flavour
        (:data:`FLAVOURS`) of the first :class:`Cut`, :class:`ServerRestart` or
        :class:`Refuse` in force for it, in plan order; None when it goes through."""
        for f in self.faults:
            if isinstance(f, NewConnectionFault) and f.applies("up", client):
                flavour = f.flavour(t)
                if flavour is not None:
                    return flavour
        return None

    def listening(self, t: float) -> bool:
        """False while the flavour in force for every client is ``"refused"``:
        the proxy's listening socket is closed then, so a connect is refused."""
        return self.admission(t, None) != "refused"

    def next_listener_change(self, after_s: float) -> float | None:
        """The first moment after ``after_s`` at which :meth:`listening` may change
        (a flavour turn or a window edge of a fault stating ``"refused"``); None
        when it never changes again."""
        moments: list[float] = []
        for f in self.faults:
            if not (isinstance(f, NewConnectionFault) and "refused" in f.flavours):
                continue
            if after_s < f.start_s:
                moments.append(f.start_s)
                continue
            turn = f.start_s + (int((after_s - f.start_s) / f.flavour_s + 1e-9) + 1) * f.flavour_s
            end = f.end_s
            if end is None or turn < end:
                moments.append(turn)
            elif after_s < end:
                moments.append(end)
        return min(moments, default=None)

    @property
    def outage_flavours(self) -> tuple[OutageFlavour, ...]:
        """The flavours new connections meet in this plan's outages and refusals,
        each once, in the order the plan states them (:data:`FLAVOURS`)."""
        seen: dict[OutageFlavour, None] = {}
        for f in self.faults:
            if isinstance(f, NewConnectionFault):
                seen.update(dict.fromkeys(f.flavours))
        return tuple(seen)

    def forgotten_at(self, last_byte_s: float, client: int | None) -> float | None:
        """When a flow of ``client`` whose last byte crossed at ``last_byte_s`` is
        forgotten if no byte crosses it meanwhile: the earliest moment, inside an
        :class:`IdleTimeout`'s window, at which it has been idle for that fault's
        ``idle_s`` (counted from ``last_byte_s`` or the window's start, whichever is
        later). None: no idle timeout ever forgets it."""
        moments = []
        for f in self.faults:
            if isinstance(f, IdleTimeout) and f.applies("both", client):
                moment = max(last_byte_s, f.start_s) + f.idle_s
                if f.active(moment):
                    moments.append(moment)
        return min(moments, default=None)

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
NETWORK_FAULTS: tuple[type[Fault], ...] = (Latency, Bandwidth, Cut, BlackHole, IdleTimeout, Refuse,
                                            FrameFault)


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
