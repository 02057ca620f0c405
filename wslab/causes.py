"""Causes: what ended each client's work, on which line, and the fix that a lesson teaches.

Pure functions of a run's record (:attr:`~wslab.run.Run.task_exceptions`,
``task_starts`` and ``server_opens``), measured rather than read from source
(reading source is :mod:`wslab.audit`'s job)::

    for cause in causes(run):
        print(cause.text())
    # clients 0–2: InvalidMessage at sample.py:42 `async with connect(uri) as ws:` → your
    # reconnect loop ended on InvalidMessage during the opening handshake: ... — lesson 03

:func:`first_failures` gives, for each party (a client, or the server's side
of one client's connections), the exception that ended its work for good: of
its client coroutine, its handler, and the tasks it started that it never
started again (a reconnect loop that restarts its sender after a cut has
recovered; one that died has not), the outermost, the one started first (the
reconnect loop that died on a handshake, not the sender it had started, which
ended on the cut before it). :func:`causes` maps each to a fix
with :data:`FIXES`, the first rule that applies, and groups the clients that
failed the same way on the same line.

A cancelled task is never a cause (cancellation is how work is stopped); a
task that *returned* after it was cancelled is one (lesson 08). A handler
ending on ``ConnectionClosed`` is not one either: its client went away, and
the client's side says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .course import lesson
from .run import Run, TaskException

__all__ = ["Cause", "FIXES", "Fix", "causes", "first_failures", "opening"]

_HANDSHAKE = "websockets.exceptions.InvalidHandshake"  # InvalidMessage, InvalidStatus...
_CLOSED = "websockets.exceptions.ConnectionClosed"
_AUTH = "wslab.errors.AuthError"
_REVOKED = "wslab.errors.TokenRevoked"
_AUTH_CLOSE_CODES = {4401, 4403}  # authenticate again; forbidden (AuthError.close_code)
_AUTH_STATUSES = {401, 403}
# Where websockets opens a connection (asyncio client, and the legacy one): a
# frame there, other than the exit of ``async with``, means "while opening".
_OPENING_FILES = {"websockets/asyncio/client.py": "connect.",
                  "websockets/legacy/client.py": "Connect."}


def opening(failure: TaskException) -> bool:
    """Whether the exception came out of ``connect()`` opening a connection."""
    for frame in failure.stack:
        prefix = _OPENING_FILES.get(frame.file)
        if (prefix and frame.function.startswith(prefix)
                and not frame.function.endswith("__aexit__")):
            return True
    return False


def _auth(f: TaskException) -> bool:
    return (f.is_a(_AUTH) or (f.is_a(_CLOSED) and f.code in _AUTH_CLOSE_CODES)
            or (f.is_a(_HANDSHAKE) and f.code in _AUTH_STATUSES))


def _revoked(f: TaskException) -> bool:
    return f.is_a(_REVOKED) or f.code in (4403, 403)


@dataclass(frozen=True)
class Fix:
    """One row of :data:`FIXES`: when ``applies(failure, reconnected)`` (``reconnected``:
    the client had been connected before), the ``advice`` (formatted with the
    failure's ``kind``, ``work``, ``error`` and ``closed``: the close code received) and
    the lesson that teaches it.
    ``advice=None`` means: not a cause (the failure is the consequence of another)."""

    name: str
    side: str  # "client", "server" or "any"
    applies: Callable[[TaskException, bool], bool]
    advice: str | None
    lesson: str | None

    def __post_init__(self) -> None:
        if self.lesson is not None:
            lesson(self.lesson)  # a lesson that exists, or KeyError at import


_CATCH_HANDSHAKE = ("catch handshake failures (websockets.exceptions.InvalidHandshake, the base of "
                    "InvalidMessage and InvalidStatus, and TimeoutError) as well as OSError and "
                    "ConnectionClosed, and retry with backoff")

# The causes the lab knows, the first that applies wins. Each names the fix and the lesson.
FIXES: list[Fix] = [
    Fix("cancellation swallowed", "any", lambda f, _: f.swallowed_cancel,
        "{work} returned after it was cancelled: it caught CancelledError and did not re-raise "
        "it, so whoever cancelled it cannot tell it stopped; clean up in `finally` (or re-raise "
        "CancelledError after cleaning up)", "08b"),
    Fix("session revoked", "client", lambda f, _: _auth(f) and _revoked(f),
        "the session was revoked ({kind}) and that ended the {work}: treat a revocation "
        "(TokenRevoked, close code 4403) as final: stop retrying and refuse what can no longer "
        "be sent (app.reject)", "09"),
    Fix("token refused", "client", lambda f, _: _auth(f),
        "the token was refused ({kind}) and that ended the {work}: fetch a fresh token before "
        "the old one expires, and on 4401 fetch one and reconnect with it", "09"),
    Fix("token refused in the handler", "server", lambda f, _: _auth(f),
        "{kind} escaped the handler (from app.verify_token): catch it and close the connection "
        "with its close_code (4401: authenticate again, 4403: do not retry), so the client "
        "knows what to do", "09"),
    Fix("handshake failure after a reconnection", "client",
        lambda f, reconnected: f.is_a(_HANDSHAKE) and reconnected,
        "your reconnect loop ended on {kind} during the opening handshake: " + _CATCH_HANDSHAKE,
        "03"),
    Fix("handshake failure", "client", lambda f, _: f.is_a(_HANDSHAKE),
        "connecting ended on {kind} during the opening handshake and nothing retried: "
        + _CATCH_HANDSHAKE, "03"),
    Fix("timeout while opening", "client",
        lambda f, _: f.is_a("builtins.TimeoutError") and opening(f),
        "opening the connection timed out (connect()'s open_timeout, 10 s by default) and that "
        "ended the {work}: catch TimeoutError from connect() and retry with backoff", "03"),
    Fix("refused while opening", "client", lambda f, _: f.is_a("builtins.OSError") and opening(f),
        "connecting failed with {kind} (the server down, or refusing) and that ended the "
        "{work}: catch OSError from connect() and retry with backoff", "03"),
    Fix("connection closed, no reconnection", "client", lambda f, _: f.is_a(_CLOSED),
        "the connection closed ({closed}) and {kind} ended the {work}: nothing "
        "reconnects. Catch ConnectionClosed where the connection is used, connect again with "
        "backoff, and resend what was not acknowledged", "03"),
    Fix("handler's client gone", "server", lambda f, _: f.is_a(_CLOSED), None, None),
    Fix("queue full", "any", lambda f, _: f.is_a("asyncio.queues.QueueFull"),
        "put_nowait() on a full asyncio.Queue raised QueueFull and that ended the {work}: "
        "decide what a full queue does (wait with `await put()`, drop the oldest, or refuse "
        "with app.reject()) and do it", "05"),
    Fix("any other exception", "any", lambda f, _: True,
        "an exception ended the {work}: {error}. List what can fail there and handle each "
        "(retry, skip, or stop visibly)", "02"),
]


@dataclass(frozen=True)
class Cause:
    """One way the design's work ended, with the fix: for every party in ``clients``
    (on ``side``), its first failure was ``failure``'s kind on ``failure``'s line."""

    side: str  # "client" or "server"
    clients: tuple[int | None, ...]  # sorted; None: a connection on a path the lab did not give
    failure: TaskException  # the earliest of them
    advice: str
    lesson: str  # "03"

    def who(self) -> str:
        """``"clients 0–2, 5"``, ``"client 3"``, ``"server (clients 0–2)"``."""
        numbers = _ranges([c for c in self.clients if c is not None])
        others = ["another path"] * (None in self.clients)
        n = len(self.clients)
        named = ", ".join([*numbers, *others])
        clients = f"client{'s' if n > 1 else ''} {named}"
        return clients if self.side == "client" else f"server ({clients})"

    def text(self) -> str:
        """``clients 0–2: InvalidMessage at sample.py:42 `...` → advice — lesson 03``."""
        where = self.failure.where
        at = f"at {where}" if where is not None else f"in {self.failure.work}"
        return f"{self.who()}: {self.failure.kind} {at} → {self.advice} — lesson {self.lesson}"

    def to_json(self) -> dict[str, Any]:
        where = self.failure.where
        return {
            "side": self.side, "clients": list(self.clients), "t_s": self.failure.t_s,
            "kind": self.failure.kind, "error": self.failure.error, "work": self.failure.work,
            "where": None if where is None else {"file": where.file, "line": where.line,
                                                 "code": where.code},
            "advice": self.advice, "lesson": self.lesson,
        }


def first_failures(run: Run) -> dict[tuple[str, int | None], TaskException]:
    """Each party's failure that ended its work for good, and was a cause: that of
    its outermost work (see the module docstring), by ``(side, client)``, in
    order of time."""
    return {party: failure for party, (failure, _, _) in _first_causes(run).items()}


def causes(run: Run) -> list[Cause]:
    """The causes of the run, each party's first (:func:`first_failures`) mapped to
    its fix (:data:`FIXES`), parties that failed alike on the same line grouped;
    the earliest first."""
    groups: dict[tuple, list[TaskException]] = {}
    for failure, advice, number in _first_causes(run).values():
        where = failure.where
        key = (failure.side, failure.kind, advice, number,
               (where.file, where.line) if where is not None else failure.work)
        groups.setdefault(key, []).append(failure)
    return [Cause(key[0], tuple(sorted((f.client_id for f in group), key=_client_order)),
                  group[0], key[2], key[3])
            for key, group in groups.items()]


def _first_causes(run: Run) -> dict[tuple[str, int | None], tuple[TaskException, str, str]]:
    """Each party's failure that counts, with its advice and lesson: of the pieces
    of work that failed and were never started again, the outermost one (started
    first; a reconnect loop rather than the sender it started), the earliest
    failure if several started together."""
    starts: dict[tuple[str, int | None, str], list[int]] = {}  # (side, client, work) -> indexes
    for index, (_, side, client, work) in enumerate(run.task_starts):
        starts.setdefault((side, client, work), []).append(index)
    first_open: dict[int | None, float] = {}  # client -> when the server first saw it
    for t, client in run.server_opens:
        first_open.setdefault(client, t)
    found: dict[tuple[str, int | None], tuple[int, float, TaskException, str, str]] = {}
    for failure in run.task_exceptions:
        party = (failure.side, failure.client_id)
        indexes = starts.get((*party, failure.work), [])
        # Started again: the party ran the same coroutine function again after it ended.
        if indexes and indexes[-1] >= failure.starts_before:
            continue
        started = max((i for i in indexes if i < failure.starts_before), default=-1)
        # Connected before: the server saw this client (however the client connects).
        reconnected = (failure.side == "client"
                       and first_open.get(failure.client_id, float("inf")) <= failure.t_s)
        advice, number = _fix_of(failure, reconnected)
        if advice is None or number is None:
            continue
        candidate = (started, failure.t_s, failure, advice, number)
        if party not in found or candidate[:2] < found[party][:2]:
            found[party] = candidate
    ordered = sorted(found.items(), key=lambda item: item[1][2].t_s)
    return {party: (failure, advice, number) for party, (_, _, failure, advice, number) in ordered}


def _fix_of(failure: TaskException, reconnected: bool) -> tuple[str | None, str | None]:
    for fix in FIXES:
        if fix.side in ("any", failure.side) and fix.applies(failure, reconnected):
            if fix.advice is None:
                return None, None
            closed = f"close code {failure.code}" if failure.code else "no close frame"
            return fix.advice.format(kind=failure.kind, work=_work_name(failure),
                                     error=failure.error, closed=closed), fix.lesson
    return None, None  # unreachable: the last rule applies to everything


def _work_name(failure: TaskException) -> str:
    if failure.work in ("client", "server handler"):
        return failure.work
    return f"task {failure.work}"


def _client_order(client: int | None) -> tuple[bool, int]:
    return (client is None, client or 0)


def _ranges(numbers: list[int]) -> list[str]:
    """[0, 1, 2, 5] -> ["0–2", "5"]."""
    spans: list[list[int]] = []
    for n in sorted(set(numbers)):
        if spans and spans[-1][1] == n - 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return [f"{a}" if a == b else f"{a}–{b}" for a, b in spans]
