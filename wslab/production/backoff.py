"""Reconnection delays: exponential backoff with jitter (lesson 03).

Pure: no clock, no sleep. :class:`Backoff` hands out the delay before each
reconnection attempt; the caller sleeps. Three policies:

- ``"none"``: ``min(cap, base * factor**attempt)``. Every client that lost its
  connection at the same moment retries at the same moments: a storm.
- ``"full"`` (the default): a uniform draw in ``[0, that delay]``, the "full
  jitter" that spreads retries best for the least total work.
- ``"decorrelated"``: ``min(cap, uniform(base, 3 * previous))``, where the
  previous delay is ``base`` before the first attempt.

``reset()`` after a connection that stayed up long enough, so that the next
outage starts again from short delays. Draws come from ``rng`` (seed it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError

Jitter = Literal["none", "full", "decorrelated"]


@dataclass
class Backoff:
    base_s: float = 0.05
    cap_s: float = 2.0
    factor: float = 2.0
    jitter: Jitter = "full"
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    _previous_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ConfigError(f"backoff needs 0 < base_s <= cap_s, got {self.base_s!r}, {self.cap_s!r}")
        if self.factor < 1:
            raise ConfigError(f"backoff factor must be >= 1, got {self.factor!r}")
        if self.jitter not in ("none", "full", "decorrelated"):
            raise ConfigError(f"jitter must be 'none', 'full' or 'decorrelated', got {self.jitter!r}")

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call is one more attempt."""
        ceiling = min(self.cap_s, self.base_s * self.factor ** self.attempt)
        self.attempt += 1
        if self.jitter == "none":
            delay = ceiling
        elif self.jitter == "full":
            delay = self.rng.uniform(0, ceiling)
        else:
            # The first draw starts from base (AWS's "sleep = base"), so it is jittered
            # too: uniform(base, 3 * base), not always exactly base.
            previous = self._previous_s or self.base_s
            delay = min(self.cap_s, self.rng.uniform(self.base_s, 3 * previous))
        self._previous_s = delay
        return delay

    def reset(self) -> None:
        """Start again from the shortest delays (after a connection that held)."""
        self.attempt = 0
        self._previous_s = 0.0
