"""The server's session store: who owns a session, and how many are kept (lesson 09).

Pure state, no I/O, no clock: time comes in as a number (``app.now()``), and
what the store decides comes out as values the server logs and counts.

Guarantees:

- **A session belongs to its subject.** The subject whose hello opened a
  session (the token's, see :mod:`wslab.auth`) is its owner; a hello from any
  other subject with that id is refused ("not yours") and changes nothing:
  the owner's connection, window and sequence are as they were. Without
  tokens the subject is None for everyone, so the session id alone is the
  credential, as before this check existed (it must then be unguessable:
  the client draws it from :mod:`secrets`).
- **Bounded.** At most ``max_sessions_per_subject`` sessions per subject
  (anonymous sessions have no such bound) and ``max_sessions_total`` in all.
  A new session beyond a bound evicts the session of that subject (or of the
  store) that has been idle longest, idle meaning no live connection; when
  none is idle, the newcomer is refused ("full") and nobody is evicted. A
  session idle for ``session_ttl_s`` is evicted at the next hello (lazily: the
  bounds hold in between).
- **Evicted means said.** Each eviction comes back as an :class:`Eviction`
  with its reason and the server messages the session still held, so that
  the server refuses them explicitly (``app.reject``) rather than lose them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .channel import Session
from .settings import Settings

# What claim() answers. "resumed" and "opened" hand out the session.
RESUMED, OPENED, NOT_YOURS, FULL = "resumed", "opened", "not yours", "full"
# Why a session was evicted (the reason label of wslab_sessions_evicted_total).
IDLE_PAST_TTL, SUBJECT_AT_BOUND, STORE_AT_BOUND = (
    "idle past its ttl", "its subject's bound reached", "the store's bound reached")


@dataclass(frozen=True)
class Eviction:
    session_id: str
    owner: str | None
    reason: str
    idle_s: float
    held: list[str] = field(repr=False)  # server messages kept for it, never acknowledged


@dataclass(frozen=True)
class Claim:
    """The answer to a hello: ``verdict`` is one of RESUMED, OPENED, NOT_YOURS,
    FULL; ``session`` is None unless RESUMED or OPENED."""

    verdict: str
    session: Session | None
    evicted: list[Eviction]


class SessionStore:
    """Sessions by id, with their owners and idle times (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sessions: dict[str, Session] = {}
        self._owner: dict[str, str | None] = {}
        self._owned: dict[str, set[str]] = {}  # subject -> its session ids (not None's)
        # Sessions without a live connection, longest idle first, with since when.
        self._idle: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def claim(self, session_id: str, subject: str | None, now_s: float,
              new: Callable[[], Session]) -> Claim:
        """Resume ``session_id`` for ``subject``, or open it (``new()``), making
        room by the bounds; the session returned is attached (not idle) until
        :meth:`release`. NOT_YOURS and FULL change nothing but the evictions
        of sessions idle past their TTL."""
        evicted = self._evict_expired(now_s)
        session = self._sessions.get(session_id)
        if session is not None:
            if self.settings.bind_sessions_to_subject and self._owner[session_id] != subject:
                return Claim(NOT_YOURS, None, evicted)
            self._idle.pop(session_id, None)
            return Claim(RESUMED, session, evicted)
        limit = self.settings.max_sessions_per_subject
        if subject is not None and limit is not None:
            mine = self._owned.get(subject, set())
            if len(mine) >= limit:
                idle = [i for i in mine if i in self._idle]
                if not idle:
                    return Claim(FULL, None, evicted)
                oldest = min(idle, key=self._idle.__getitem__)
                evicted.append(self._evict(oldest, SUBJECT_AT_BOUND, now_s))
        limit = self.settings.max_sessions_total
        if limit is not None and len(self._sessions) >= limit:
            if not self._idle:
                return Claim(FULL, None, evicted)
            evicted.append(self._evict(next(iter(self._idle)), STORE_AT_BOUND, now_s))
        session = self._sessions[session_id] = new()
        self._owner[session_id] = subject
        if subject is not None:
            self._owned.setdefault(subject, set()).add(session_id)
        return Claim(OPENED, session, evicted)

    def release(self, session_id: str, now_s: float) -> None:
        """The session's last connection ended: idle from ``now_s`` on."""
        if session_id in self._sessions:
            self._idle.pop(session_id, None)
            self._idle[session_id] = now_s  # the newest idle goes last

    def _evict_expired(self, now_s: float) -> list[Eviction]:
        evicted = []
        ttl_s = self.settings.session_ttl_s
        while self._idle:
            session_id, since_s = next(iter(self._idle.items()))
            if now_s - since_s < ttl_s:
                break
            evicted.append(self._evict(session_id, IDLE_PAST_TTL, now_s))
        return evicted

    def _evict(self, session_id: str, reason: str, now_s: float) -> Eviction:
        session = self._sessions.pop(session_id)
        owner = self._owner.pop(session_id)
        if owner is not None:
            mine = self._owned[owner]
            mine.discard(session_id)
            if not mine:
                del self._owned[owner]
        since_s = self._idle.pop(session_id)
        return Eviction(session_id, owner, reason, now_s - since_s, session.window.clear())
