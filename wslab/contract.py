"""The design contract: the one shape a server plus a client must fit.

A *design* is a server handler and a client, given to the lab as one
:class:`Design`. wslab's own designs, each lesson's steps and code pasted from
a chat assistant all fit the same contract::

    async def handler(websocket, app: ServerApp) -> None: ...
    async def client(app: ClientApp) -> None: ...

    design = Design("mine", handler=handler, client=client)

The client may instead be a class (or a factory) whose objects have
``start()``, ``send(message)`` and ``stop()``, the shape assistants write
(see "A client object" below): ``Design("mine", handler=handler, client=MyClient)``.
A server or a client in another language is a command the lab runs as a
process, speaking a line protocol in place of ``app`` (:mod:`wslab.external`).

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

A plain ``websockets.connect(app.uri)`` works as well: the lab sees every
client connection a design opens, whichever way it opens it.

Messages the application produced that the client has not taken from
``app.outgoing()`` yet wait in the lab: they count as the design's backlog
(``peak_backlog`` in the run's summary), as they would wait in the
application's memory if the design does not pull while it is disconnected.

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

A client object
---------------
An assistant's client usually is a class::

    class ReconnectingClient:
        def __init__(self, uri, on_message=None): ...
        async def start(self): ...           # connect, start its own tasks
        async def send(self, message): ...   # called by the application
        async def stop(self): ...            # close, end its tasks

The lab runs it as an application would: it constructs it with the URI
(through the lab's proxy) and a callback, ``ReconnectingClient(uri,
on_message=callback)``, calls ``start()``, calls ``send(message)`` for each
message at the moment the application produces it, and calls ``stop()`` when
the run ends (not when production ends: the object stays alive until then).
Each of the three may be ``async def`` or plain ``def``; a coroutine or other
awaitable it returns is awaited. Exactly:

- the constructor is called as ``cls(uri, on_message=callback)`` when it has
  a parameter named ``on_message`` (or, in this order, ``on_receive``,
  ``callback``, ``message_callback``, ``message_handler``: the callback is
  passed under the first of these names it has), else as ``cls(uri)``; the
  first positional parameter receives the URI, whatever its name. A factory
  function (plain ``def``, first parameter not ``app``) is called the same way.
- it receives messages by calling that callback (given to the constructor,
  or set by the lab on the first attribute of those names the object has
  after construction), or else by being an async iterator
  (``async for message in client``), which the lab reads after ``start()``.
  A callback may be awaited or not: the lab hands messages to the
  application in the order it was called, and what it returns, when
  awaited, is done when the application has processed that message. A
  client with neither only sends.
- a message counts as accepted by the design when ``send(message)`` is
  called: whatever the object buffers counts as the design's queue
  (``peak_queue``). How long each ``send`` kept the producer waiting is
  recorded (``run.send_blocked``, ``peak_send_blocked_s`` in the summary);
  messages produced meanwhile wait in the lab as the design's backlog. A
  ``send`` that raises refuses that message explicitly (``rejected``, with
  the exception as the reason, as :meth:`ClientApp.reject`): the application
  knows, and goes on with the next one.

Pasted as it is, an assistant's answer needs at most three changed lines:

1. the handler takes ``app``: ``async def handler(websocket, app):``;
2. where it processes a message, ``reply = await app.process(message)``
   (send ``reply`` back if it is not None);
3. one added line names the client class: ``client = ReconnectingClient``.

(A callback parameter with a name not in the list above is one more line:
rename it ``on_message``.)

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

import websockets.asyncio.client as _websockets_client
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
        check_handler(self.handler)
        check_client(self.client)
        if not isinstance(self.stop_grace_s, (int, float)) or not 0 <= self.stop_grace_s <= 10:
            raise DesignContractError(f"stop_grace_s must be seconds from 0 to 10, got {self.stop_grace_s!r}")
        if not isinstance(self.serve_options, Mapping):
            raise DesignContractError(
                f"serve_options must be a dict of keyword arguments for websockets' serve(), "
                f"got {self.serve_options!r}"
            )


    @property
    def client_shape(self) -> str:
        """``"pull"`` for ``async def client(app)``, ``"object"`` for a client class
        or factory (see the module docstring)."""
        return client_shape(self.client)

    def client_main(self, app: "ClientApp") -> Awaitable[None]:
        """What the lab awaits for one client: ``client(app)``, or the client
        object driven by :func:`drive_client_object`."""
        if self.client_shape == "object":
            return drive_client_object(self.client, app)
        return self.client(app)


HANDLER_SHAPE = "async def handler(websocket, app): ..."
CLIENT_SHAPE = "async def client(app): ..."
CLIENT_METHODS = ("start", "send", "stop")
# The names under which a client object's constructor (or attribute) takes the
# callback for received messages, in order of preference (the module docstring).
CALLBACK_NAMES = ("on_message", "on_receive", "callback", "message_callback", "message_handler")


def check_handler(handler: Any) -> None:
    """Raise :class:`DesignContractError`, saying what to change, unless
    ``handler`` fits ``async def handler(websocket, app)``."""
    _check_function(handler, "handler", ["websocket", "app"], HANDLER_SHAPE)


def client_shape(client: Any) -> str:
    """``"object"`` for a class or a plain ``def`` factory whose first parameter is
    not ``app``; ``"pull"`` for anything else (checked as ``client(app)``)."""
    if inspect.isclass(client):
        return "object"
    if inspect.isfunction(client) and not inspect.iscoroutinefunction(client):
        first = next(iter(inspect.signature(client).parameters), None)
        if first is not None and first != "app":
            return "object"
    return "pull"


def check_client(client: Any) -> None:
    """Raise :class:`DesignContractError`, saying what to change, unless ``client``
    fits one of the two shapes: ``async def client(app)``, or a client class
    (or factory) constructed as ``cls(uri[, on_message=...])`` whose objects
    have ``start()``, ``send(message)`` and ``stop()``."""
    if client_shape(client) == "pull":
        _check_function(client, "client", ["app"], CLIENT_SHAPE)
        return
    name = getattr(client, "__name__", repr(client))
    if inspect.isclass(client):
        present = [m for m in CLIENT_METHODS if callable(getattr(client, m, None))]
        missing = [m for m in CLIENT_METHODS if m not in present]
        if missing:
            raise DesignContractError(
                f"the client class {name} has no {' and no '.join(_method(m) for m in missing)}"
                f" method{'s' if len(missing) > 1 else ''}"
                + (f" (it has {', '.join(_method(m) for m in present)})" if present else "")
                + ": the lab calls start(), then send(message) for each message the "
                "application produces, then stop(); each may be async")
    try:
        signature = inspect.signature(client)
    except (TypeError, ValueError):
        return
    if _constructor_arguments(client, "uri", None) is None:
        raise DesignContractError(
            f"the lab constructs the client as {name}(uri) or {name}(uri, on_message=callback), "
            f"but {name} takes {signature}: take the URI (ws://host:port/path) as the first "
            f"argument and name the callback parameter on_message (or one of "
            f"{', '.join(CALLBACK_NAMES[1:])})")


def _method(name: str) -> str:
    return "send(message)" if name == "send" else f"{name}()"


def _constructor_arguments(factory: Any, uri: str, on_message: Any) -> dict[str, Any] | None:
    """The keyword arguments to construct a client object with, beside the URI;
    None when ``factory(uri)`` does not fit its signature."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    named = [n for n in CALLBACK_NAMES if n in signature.parameters]
    kwargs = {named[0]: on_message} if named else {}
    try:
        signature.bind(uri, **kwargs)
    except TypeError:
        return None
    return kwargs


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
            "before version 10.1, removed in 14. Drop `path` (read the path from "
            f"websocket.request.path if you need it) and use {shape}"
        )
    try:
        signature.bind(*params)
    except TypeError:
        raise DesignContractError(
            f"the design's {role} must accept {len(params)} positional argument(s) "
            f"({', '.join(params)}): {shape}; got {getattr(fn, '__name__', fn)}"
            f"{signature.replace(return_annotation=inspect.Signature.empty)}"
        ) from None


class _TrackedClientConnection(ClientConnection):
    """A ClientConnection that tells the client app it exists (for buffer sampling,
    and for the connection events that say when a client noticed a dead peer).
    Outside a lab client's task it is the library's class, unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app = app = _current_client.get()
        if app is not None:
            app._track(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._app is not None:
            self._app._run.record_client_event(self._app.client_id, "close")


# websockets' connect() looks ClientConnection up in its module when it is called
# (websockets/asyncio/client.py, connect.__init__), so a design that calls
# websockets.connect(app.uri) itself, as pasted code and client objects do, gets
# the tracked class too: the lab sees its connections as it sees app.connect()'s.
# The subclass only adds bookkeeping, and only inside a lab client's task.
_websockets_client.ClientConnection = _TrackedClientConnection


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
        reply = None
        if self._run.workload.echo and msg_id is not None and msg_id.startswith("u"):
            echo_id = reply_id(msg_id)
            # The reply is produced before the message counts as delivered: never a
            # moment with nothing outstanding, at which the run could end without it.
            if echo_id not in self._run.ledger.records:
                self._run.ledger.produced(echo_id, now)
                self._run.ledger.accepted(echo_id, now)
            reply = make_message(echo_id, self._run.workload.size_bytes)
        self._run.ledger.delivered(msg_id, now)
        return reply


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
        # (t_s, blocked_s) for each send(message) of a client object: when the
        # application called it and how long it waited for it to return.
        self.send_blocked: list[tuple[float, float]] = []

    def connections(self) -> list[ClientConnection]:
        """The connections :meth:`connect` opened that are still open (their socket
        not closing); closed ones are forgotten, as reconnections add new ones."""
        self._connections = {c for c in self._connections
                             if getattr(c, "transport", None) is None or not c.transport.is_closing()}
        return list(self._connections)

    def _track(self, connection: ClientConnection) -> None:
        self._connections.add(connection)
        if connection.ping_timeout is not None:
            self._run.ping_timeouts_s.add(connection.ping_timeout)
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


# A client object (see "A client object" in the module docstring) ------------------

async def _settle(result: Any) -> Any:
    """The result of a call to a method that may be sync or async."""
    return await result if inspect.isawaitable(result) else result


class _Receiver:
    """The ``on_message`` callback the lab gives a client object.

    Calling it queues the message for the client application and returns a
    future that is done once the application has processed it: a client that
    awaits the callback waits as long as the application takes (backpressure),
    one that calls it without awaiting goes on at once, and the messages wait
    here, in order, counted as the design's (accepted, not yet delivered).
    """

    def __init__(self, app: "ClientApp") -> None:
        self._app = app
        self._waiting: asyncio.Queue[tuple[Any, asyncio.Future[None]]] = asyncio.Queue()

    def __call__(self, message: Any) -> asyncio.Future[None]:
        processed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.put_nowait((message, processed))
        return processed

    async def run(self) -> None:
        while True:
            message, processed = await self._waiting.get()
            await self._app.deliver(message)
            if not processed.done():
                processed.set_result(None)


async def drive_client_object(factory: Any, app: "ClientApp") -> None:
    """Run a client object for one lab client, as an application would.

    Constructs it (``factory(app.uri[, on_message=...])``), calls ``start()``,
    then ``send(message)`` for each message as the application produces it
    (recording in ``app.send_blocked`` how long each call took), and keeps the
    object until the run ends: ``stop()`` is called when ``app.stopping`` is
    set or when the lab cancels this client, whichever comes first. The tasks
    the lab adds (the callback's delivery, reading an async iterator) end with
    it. An exception raised by ``send`` refuses that message (``app.reject``);
    one raised by the constructor, ``start`` or ``stop`` ends this client and
    is recorded as the design's.
    """
    name = getattr(factory, "__name__", repr(factory))
    receiver = _Receiver(app)
    kwargs = _constructor_arguments(factory, app.uri, receiver)
    if kwargs is None:
        check_client(factory)  # raises, saying what the constructor should take
        kwargs = {}
    client = factory(app.uri, **kwargs)
    missing = [_method(m) for m in CLIENT_METHODS if not callable(getattr(client, m, None))]
    if missing:
        raise DesignContractError(f"the object {name}(uri) returned has no {', '.join(missing)}")
    attribute = next((n for n in CALLBACK_NAMES if hasattr(client, n)), None)
    if not kwargs and attribute is not None:
        setattr(client, attribute, receiver)
    try:
        async with asyncio.TaskGroup() as lab:
            helpers = [lab.create_task(receiver.run(), name=f"wslab receiver {app.client_id}")]
            await _settle(client.start())
            try:
                if not kwargs and attribute is None and hasattr(client, "__aiter__"):
                    helpers.append(lab.create_task(_read_all(client, app),
                                                   name=f"wslab reader {app.client_id}"))
                while (message := await app.next_message()) is not None:
                    called_s = app.now()
                    try:
                        await _settle(client.send(message))
                    except Exception as exc:  # the application is told: a refusal, not a loss
                        app.reject(message, f"send() raised {type(exc).__name__}: {exc}")
                    app.send_blocked.append((round(called_s, 6), round(app.now() - called_s, 6)))
                await app.stopping.wait()  # alive until the run ends
            finally:
                try:
                    await _settle(client.stop())
                finally:
                    for helper in helpers:
                        helper.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:  # report the design's exception, not the group
            raise group.exceptions[0] from None
        raise


async def _read_all(client: Any, app: "ClientApp") -> None:
    async for message in client:
        await app.deliver(message)
