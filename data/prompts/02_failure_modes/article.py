"""Production-ready WebSocket server and client (asyncio, websockets).

What the article's prompt asks for (data/prompts/article_python.md): a server
and a client with automatic reconnection, an outbound message queue,
backpressure, ping/pong heartbeats, graceful shutdown, structured logging,
connection metrics and message acknowledgements, and no message lost.

Features:

- **Automatic reconnection** with exponential backoff (1 s, 2 s, 4 s... up to 30 s);
  messages that were not acknowledged are resent after reconnecting.
- **Outbound message queue**: ``send()`` puts the message in a queue; a sender task
  writes it to the connection when one is open.
- **Backpressure**: the queues are bounded (``MAX_QUEUE_SIZE``); when the client's
  is full, ``send()`` waits until there is room; when the server's is full, its
  reader stops reading until the worker catches up.
- **Acknowledgements**: every message carries a unique id; the server's reader
  answers ``{"type": "ack", "id": ...}`` and hands the message to a worker, so slow
  processing never blocks reading. The client keeps each message until its
  acknowledgement arrives; one not acknowledged within ``ACK_TIMEOUT`` is sent again.
- **Heartbeats**: websockets' built-in ping/pong on both sides.
- **Graceful shutdown**: ``stop()`` waits for the queue to drain and for pending
  acknowledgements (up to ``SHUTDOWN_TIMEOUT``), then closes with code 1000.
- **Structured logging** (JSON lines) and **metrics** (counters per side).

(Adapted to wslab's design contract: ``handler`` takes the lab's ``app``, whose
``app.process`` is the server's business logic and ``app.outgoing()`` what it
pushes; the line ``client = WebSocketClient`` names the client class. The
``main()`` functions that start the server and the client, with their signal
handlers, are left out: the lab starts and stops them.)
"""

import asyncio
import contextlib
import inspect
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

# Configuration -------------------------------------------------------------------

PING_INTERVAL = 20  # seconds between heartbeat pings
PING_TIMEOUT = 20  # seconds to wait for a pong before the connection is considered dead
INITIAL_BACKOFF = 1.0  # seconds before the first reconnection attempt
MAX_BACKOFF = 30.0  # seconds, upper bound of the backoff
MAX_QUEUE_SIZE = 1000  # outbound messages buffered before send() blocks
ACK_TIMEOUT = 5.0  # seconds before an unacknowledged message is resent
SHUTDOWN_TIMEOUT = 5.0  # seconds stop() waits for pending messages

SERVE_OPTIONS = {"ping_interval": PING_INTERVAL, "ping_timeout": PING_TIMEOUT}


# Structured logging --------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy to ship to a log aggregator."""

    FIELDS = ("side", "client_id", "msg_id", "delay", "pending", "queued", "error")

    def format(self, record):
        entry = {"ts": self.formatTime(record), "level": record.levelname,
                 "logger": record.name, "event": record.getMessage()}
        for name in self.FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        return json.dumps(entry)


logger = logging.getLogger(__name__)


def setup_logging(level=logging.INFO):
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler])


# Metrics -------------------------------------------------------------------------

@dataclass
class Metrics:
    connections_opened: int = 0
    connections_closed: int = 0
    reconnects: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    messages_acked: int = 0
    messages_resent: int = 0
    errors: int = 0

    def snapshot(self):
        return asdict(self)


server_metrics = Metrics()


# Server --------------------------------------------------------------------------

async def handler(websocket, app):
    """One connection: a reader that acknowledges, a worker that processes, a pusher."""
    server_metrics.connections_opened += 1
    logger.info("client connected", extra={"side": "server"})
    # Bounded: when processing falls behind, the reader stops reading (backpressure).
    inbox = asyncio.Queue(maxsize=MAX_QUEUE_SIZE)
    worker = asyncio.create_task(process_messages(websocket, app, inbox))
    pusher = asyncio.create_task(push_updates(websocket, app))
    try:
        async for raw in websocket:
            try:
                message = json.loads(raw)
            except json.JSONDecodeError:
                server_metrics.errors += 1
                logger.warning("invalid JSON", extra={"side": "server"})
                continue
            if message.get("type") != "message":
                continue
            server_metrics.messages_received += 1
            # Acknowledge receipt right away so the client can drop it from its pending list.
            await websocket.send(json.dumps({"type": "ack", "id": message["id"]}))
            server_metrics.messages_acked += 1
            await inbox.put(message)
    except ConnectionClosed as exc:
        logger.info("client disconnected", extra={"side": "server", "error": str(exc)})
    finally:
        for task in (worker, pusher):
            task.cancel()
        await asyncio.gather(worker, pusher, return_exceptions=True)
        server_metrics.connections_closed += 1


async def process_messages(websocket, app, inbox):
    """The worker: slow processing never blocks reading (and answering pings)."""
    while True:
        message = await inbox.get()
        try:
            reply = await app.process(message["payload"])
            if reply is not None:
                await websocket.send(json.dumps({"type": "message", "payload": reply}))
        except ConnectionClosed:
            return
        except Exception as exc:
            server_metrics.errors += 1
            logger.exception("processing failed", extra={"side": "server", "error": repr(exc)})
        finally:
            inbox.task_done()


async def push_updates(websocket, app):
    async for update in app.outgoing():
        await websocket.send(json.dumps({"type": "message", "payload": update}))
        server_metrics.messages_sent += 1


# Client --------------------------------------------------------------------------

class WebSocketClient:
    """A client that reconnects, queues, and waits for acknowledgements.

    ``await client.start()``, then ``await client.send(payload)`` as often as needed,
    then ``await client.stop()``. Incoming messages go to ``on_message``.
    """

    def __init__(self, uri, on_message=None, max_queue_size=MAX_QUEUE_SIZE):
        self.uri = uri
        self.on_message = on_message
        self.queue = asyncio.Queue(maxsize=max_queue_size)  # outbound, bounded: backpressure
        self.pending = {}  # msg_id -> (message, time sent): waiting for an ack
        self.metrics = Metrics()
        self._running = False
        self._websocket = None
        self._task = None

    # Public API

    async def start(self):
        self._running = True
        self._task = asyncio.create_task(self._run())
        logger.info("client started", extra={"side": "client"})

    async def send(self, payload):
        """Queue a message; waits while the queue is full (backpressure)."""
        message = {"type": "message", "id": str(uuid.uuid4()), "payload": payload}
        await self.queue.put(message)

    async def stop(self):
        """Graceful shutdown: let the queue drain and acks arrive, then close."""
        try:
            await asyncio.wait_for(self._drain(), SHUTDOWN_TIMEOUT)
        except asyncio.TimeoutError:
            logger.warning("shutdown timeout", extra={"side": "client", "pending": len(self.pending),
                                                      "queued": self.queue.qsize()})
        self._running = False
        if self._websocket is not None:
            await self._websocket.close(1000, "client shutdown")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        logger.info("client stopped", extra={"side": "client", **self.metrics.snapshot()})

    # Connection loop

    async def _run(self):
        backoff = INITIAL_BACKOFF
        while self._running:
            try:
                async with websockets.connect(self.uri, ping_interval=PING_INTERVAL,
                                              ping_timeout=PING_TIMEOUT) as websocket:
                    self._websocket = websocket
                    self.metrics.connections_opened += 1
                    logger.info("connected", extra={"side": "client"})
                    backoff = INITIAL_BACKOFF  # connected: start again from the shortest delay
                    await self._resend_pending(websocket)
                    await self._serve(websocket)
            except (ConnectionClosed, InvalidHandshake, OSError, asyncio.TimeoutError) as exc:
                self.metrics.errors += 1
                logger.warning("connection error", extra={"side": "client", "error": repr(exc)})
            finally:
                if self._websocket is not None:
                    self.metrics.connections_closed += 1
                self._websocket = None
            if not self._running:
                break
            logger.info("reconnecting", extra={"side": "client", "delay": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)  # exponential backoff
            self.metrics.reconnects += 1

    async def _serve(self, websocket):
        tasks = [asyncio.create_task(self._sender(websocket)),
                 asyncio.create_task(self._receiver(websocket)),
                 asyncio.create_task(self._ack_monitor(websocket))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise ConnectionClosed and friends
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _sender(self, websocket):
        while True:
            message = await self.queue.get()
            self.pending[message["id"]] = (message, time.monotonic())
            await websocket.send(json.dumps(message))
            self.metrics.messages_sent += 1
            self.queue.task_done()

    async def _receiver(self, websocket):
        async for raw in websocket:
            message = json.loads(raw)
            if message.get("type") == "ack":
                if self.pending.pop(message["id"], None) is not None:
                    self.metrics.messages_acked += 1
            elif message.get("type") == "message":
                self.metrics.messages_received += 1
                if self.on_message is not None:
                    result = self.on_message(message["payload"])
                    if inspect.isawaitable(result):
                        await result

    async def _ack_monitor(self, websocket):
        """Resend messages whose acknowledgement did not arrive in time."""
        while True:
            await asyncio.sleep(1)
            now = time.monotonic()
            for msg_id, (message, sent_at) in list(self.pending.items()):
                if now - sent_at > ACK_TIMEOUT:
                    self.pending[msg_id] = (message, now)
                    await websocket.send(json.dumps(message))
                    self.metrics.messages_resent += 1

    async def _resend_pending(self, websocket):
        """After a reconnect, send again everything that was not acknowledged."""
        for msg_id, (message, _) in list(self.pending.items()):
            self.pending[msg_id] = (message, time.monotonic())
            await websocket.send(json.dumps(message))
            self.metrics.messages_resent += 1

    async def _drain(self):
        await self.queue.join()
        while self.pending:
            await asyncio.sleep(0.1)


client = WebSocketClient  # the line that names the client class for the lab
