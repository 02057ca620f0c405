"""Faults as plain data: what goes wrong, where, and when.

A fault is a frozen dataclass with a time window (``start_s`` from the start of
the run, ``duration_s`` or None for "until the run ends"), the direction it
applies to (``"up"`` client→server, ``"down"`` server→client, or ``"both"``) and
the clients it applies to (None for all). Nothing here touches a socket: the
:class:`~wslab.proxy.FaultProxy` and the :class:`~wslab.lab.Lab` read these
objects and act on them (the *nemesis* of Maelstrom and Jepsen).

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

    @property
    def last_end_s(self) -> float:
        """When the last bounded fault window ends (0 with none)."""
        ends = [f.end_s if f.end_s is not None else f.start_s for f in self.faults]
        return max(ends, default=0.0)
