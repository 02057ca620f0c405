"""The design contract: the one shape a server plus a client must fit.

A *design* is a server handler and a client, given to the lab as one
:class:`Design`. wslab's own designs, each lesson's steps and code pasted from
a chat assistant all fit the same contract::

    async def handler(websocket, app: ServerApp) -> None: ...
    async def client(app: ClientApp) -> None: ...

    design = Design("mine", handler=handler, client=client)

The ``app`` objects are the applications on each side. They are where the lab
observes, so a design needs no instrumentation of its own:

- the client application hands messages to send through
  ``async for message in app.outgoing()`` and receives with
  ``await app.deliver(message)``;
- the server application processes each message with
  ``reply = await app.process(message)`` (``reply`` is None unless the
  workload asks for echoes) and pushes its own messages to this client
  through ``async for message in app.outgoing()``.

A message counts as delivered when ``process`` or ``deliver`` returns, not
when a socket read it. Messages are opaque text: a design may wrap them in an
envelope of its own but must hand the original text to the other application.

Wrapping pasted code
--------------------
A typical pasted server::

    async def handler(websocket):
        async for message in websocket:
            await websocket.send(f"echo: {message}")

becomes (one extra parameter, the app decides the reply)::

    async def handler(websocket, app):
        async for message in websocket:
            reply = await app.process(message)
            if reply is not None:
                await websocket.send(reply)

A typical pasted client::

    async with websockets.connect("ws://localhost:8765") as websocket:
        for item in items:
            await websocket.send(item)

becomes (``app.connect()`` is ``websockets.connect(app.uri, proxy=None)``, and
the lab can see its buffers)::

    async def client(app):
        async with app.connect() as websocket:
            async for message in app.outgoing():
                await websocket.send(message)

Keyword arguments to ``app.connect(...)`` go to
:func:`websockets.asyncio.client.connect` (``ping_interval``, ``max_queue``...),
and ``async for websocket in app.connect()`` reconnects like the library does.
Server options go in ``Design(serve_options={...})``, passed to
:func:`websockets.asyncio.server.serve`.

Server state belongs in ``app.state``, a dict shared by the connections of one
server life: a :class:`~wslab.faults.ServerRestart` gives the new server an
empty one, as a real restart loses memory. What a real server would keep in a
database goes in ``app.store``, which survives restarts. Module-level globals
survive a restart in the lab but not in production.

Guarantees the lab gives a design: its handler and client run in the lab's
event loop under a hard time limit; when the run ends, ``app.stopping`` is
set and, after ``Design.stop_grace_s``, the client task is cancelled, the server is closed, and any task the design started is
cancelled too. An exception raised by the handler closes that connection
with 1011, as ``websockets`` does; an exception raised by the client ends
that client. Both are recorded in ``run.errors``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from .context import RunContext
from .errors import DesignContractError
from .workload import make_message, message_id, reply_id

Handler = Callable[[Any, "ServerApp"], Awaitable[None]]
Client = Callable[["ClientApp"], Awaitable[None]]

_current_client: contextvars.ContextVar["ClientApp | None"] = contextvars.ContextVar(
    "wslab_current_client", default=None
)


@dataclass(frozen=True)
class Design:
    """A server handler and a client that the lab can run (see the module docstring)."""

    name: str
    handler: Handler
    client: Client
    serve_options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # Seconds the lab waits, after setting ``app.stopping``, for the client to
    # finish by itself before cancelling it. 0: it is cancelled at once.
    stop_grace_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DesignContractError(f"a design needs a non-empty name, got {self.name!r}")
        _check_function(self.handler, "handler", ["websocket", "app"],
                        "async def handler(websocket, app): ...")
        _check_function(self.client, "client", ["app"], "async def client(app): ...")
        if not isinstance(self.stop_grace_s, (int, float)) or not 0 <= self.stop_grace_s <= 10:
            raise DesignContractError(f"stop_grace_s must be seconds from 0 to 10, got {self.stop_grace_s!r}")
        if not isinstance(self.serve_options, Mapping):
            raise DesignContractError(
                f"serve_options must be a dict of keyword arguments for websockets' serve(), "
                f"got {self.serve_options!r}"
            )


def _check_function(fn: Any, role: str, params: list[str], shape: str) -> None:
    if not callable(fn):
        raise DesignContractError(f"the design's {role} must be a function: {shape}; got {fn!r}")
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)
    if not inspect.iscoroutinefunction(target):
        raise DesignContractError(
            f"the design's {role} must be a coroutine function ({shape}); "
            f"{getattr(fn, '__name__', fn)!r} is not 'async def'"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    names = list(signature.parameters)
    if role == "handler" and "path" in names:
        raise DesignContractError(
            "the handler takes a 'path' parameter: that is the signature of websockets "
            "before version 10.1, removed in 14. Read the path from websocket.request.path "
            f"and use {shape}"
        )
    try:
        signature.bind(*params)
    except TypeError:
        raise DesignContractError(
            f"the design's {role} must accept {len(params)} positional argument(s) "
            f"({', '.join(params)}): {shape}; got {getattr(fn, '__name__', fn)}{signature}"
        ) from None


class _TrackedClientConnection(ClientConnection):
    """A ClientConnection that tells the client app it exists (for buffer sampling)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app = app = _current_client.get()
        if app is not None:
            app._track(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._app is not None:
            self._app._run.record_client_event(self._app.client_id, "close")


class _Outbox:
    """Messages an application has produced and the design has not taken yet."""

    def __init__(self) -> None:
        self.items: deque[tuple[str, str]] = deque()
        self.done = False
        self._ready = asyncio.Event()

    def put(self, msg_id: str, text: str) -> None:
        self.items.append((msg_id, text))
        self._ready.set()

    def close(self) -> None:
        self.done = True
        self._ready.set()

    async def take(self) -> tuple[str, str] | None:
        while not self.items:
            if self.done:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self.items.popleft()


class _App:
    """What both applications share: outgoing messages, rejection, gauges."""

    def __init__(self, run: RunContext, client_id: int | None, outbox: _Outbox | None) -> None:
        self._run = run
        self.client_id = client_id
        self._outbox = outbox
        # A seed for the design's own random choices (jitter): the run's seed and this client.
        self.seed = run.seed * 100_003 + (client_id if client_id is not None else -1)

    async def next_message(self) -> str | None:
        """The next message this application wants sent, or None when it has no more.

        Waits until the application produces one. Once returned, the message is
        the design's responsibility: if it never reaches the other side, it is lost.
        """
        if self._outbox is None:
            return None
        item = await self._outbox.take()
        if item is None:
            return None
        msg_id, text = item
        self._run.ledger.accepted(msg_id, self._run.now())
        return text

    def backlog(self) -> int:
        """How many messages this application has produced and not handed over yet."""
        return len(self._outbox.items) if self._outbox is not None else 0

    async def outgoing(self) -> AsyncIterator[str]:
        """``async for message in app.outgoing()``: every message to send, in order."""
        while (message := await self.next_message()) is not None:
            yield message

    def reject(self, message: str, reason: str) -> None:
        """Tell the application that ``message`` will not be delivered, and why.

        An explicit refusal (backpressure, load shedding) is counted as
        ``rejected``, not ``lost``: the application knows and can act.
        """
        msg_id = message_id(message)
        if msg_id in self._run.ledger.records:
            self._run.ledger.rejected(msg_id, self._run.now(), reason)

    @property
    def metrics(self):
        """The run's :class:`~wslab.observability.Metrics`, shared by every connection."""
        return self._run.metrics

    def now(self) -> float:
        """Seconds since the run started (the clock of fault windows and tokens)."""
        return self._run.now()

    def gauge(self, name: str, value: float) -> None:
        """Report a number the lab samples over time (for example a queue's depth)."""
        self._run.gauges[(name, self.client_id)] = value


class ServerApp(_App):
    """The server application, as one connection's handler sees it.

    ``client_id`` is the lab client on the other end (None when the request
    path is not one the lab gave out); ``state`` is shared by all connections
    of this server life and is emptied by a restart (memory); ``store``
    survives restarts (a database: what a real server would persist).
    """

    def __init__(self, run: RunContext, client_id: int | None, outbox: _Outbox | None,
                 state: dict, store: dict) -> None:
        super().__init__(run, client_id, outbox)
        self.state = state
        self.store = store

    def verify_token(self, token: object):
        """The :class:`~wslab.auth.Claims` of a client's token, or raise
        :class:`~wslab.errors.TokenInvalid`, ``TokenExpired`` or ``TokenRevoked``
        (each with the ``close_code`` to answer with)."""
        return self._run.auth.verify(token, self._run.now())

    async def process(self, message: str | bytes) -> str | None:
        """Process one message from the client; return the reply to send, if any.

        The message counts as delivered when this returns. Under a
        :class:`~wslab.faults.SlowConsumer` fault on the server side it takes
        that long.
        """
        await self._run.consume_delay("server", self.client_id)
        msg_id = message_id(message)
        now = self._run.now()
        self._run.ledger.delivered(msg_id, now)
        if self._run.workload.echo and msg_id is not None and msg_id.startswith("u"):
            echo_id = reply_id(msg_id)
            if echo_id not in self._run.ledger.records:
                self._run.ledger.produced(echo_id, now)
                self._run.ledger.accepted(echo_id, now)
            return make_message(echo_id, self._run.workload.size_bytes)
        return None


class ClientApp(_App):
    """The client application of lab client ``client_id``, connecting to ``uri``.

    ``stopping`` is set when the run ends: a design with ``stop_grace_s > 0``
    may then finish by itself (flush, close with 1000, report with
    :meth:`reject` what it could not deliver) before it is cancelled.
    """

    def __init__(self, run: RunContext, client_id: int, uri: str, outbox: _Outbox | None) -> None:
        super().__init__(run, client_id, outbox)
        self.uri = uri
        self._connections: set[ClientConnection] = set()
        self.stopping = asyncio.Event()

    def connections(self) -> list[ClientConnection]:
        """The connections :meth:`connect` opened that are still open (their socket
        not closing); closed ones are forgotten, as reconnections add new ones."""
        self._connections = {c for c in self._connections
                             if getattr(c, "transport", None) is None or not c.transport.is_closing()}
        return list(self._connections)

    def _track(self, connection: ClientConnection) -> None:
        self._connections.add(connection)
        self._run.record_client_event(self.client_id, "open")

    def connect(self, **kwargs: Any) -> connect:
        """``websockets.connect(app.uri, proxy=None, **kwargs)``, visible to the lab.

        Use it like the library's: ``await``, ``async with`` or ``async for``.
        """
        kwargs.setdefault("proxy", None)
        kwargs.setdefault("create_connection", _TrackedClientConnection)
        return connect(self.uri, **kwargs)

    async def fetch_token(self) -> str:
        """A fresh token for this client from the lab's identity provider.

        Raises :class:`~wslab.errors.TokenRevoked` once the client's sessions
        were revoked (:class:`~wslab.faults.Revoke`). Tokens live
        ``Scenario.token_ttl_s``.
        """
        await asyncio.sleep(0)  # a call to the identity provider
        return self._run.auth.issue(f"c{self.client_id}", self._run.now())

    async def deliver(self, message: str | bytes) -> None:
        """Hand one received message to the client application.

        The message counts as delivered when this returns. Under a
        :class:`~wslab.faults.SlowConsumer` fault on the client side it takes
        that long.
        """
        await self._run.consume_delay("client", self.client_id)
        self._run.ledger.delivered(message_id(message), self._run.now())
