"""One connection's reader, worker and writer tasks (lesson 07).

Both ends of the production design run the same :class:`Channel` over a
connection: the **reader** only reads (so pings are always answered and a
slow application never stalls the socket), the **worker** hands messages to
the application in order, the **writer** alone sends (acknowledgements first,
then messages within the window, going back after ``ack_timeout_s`` without
progress). The three run in one ``asyncio.TaskGroup``: when the connection
closes, the reader ends the channel and the other two are cancelled with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from . import envelope
from .reliable import InboundSequence, OutboundWindow
from .settings import Settings


@dataclass
class Session:
    """What outlives a connection: the outbound window and the inbound sequence.

    ``lock`` serialises delivery when two connections of the session overlap;
    ``space`` wakes whoever waits for room in the window.
    """

    window: OutboundWindow
    inbound: InboundSequence = field(default_factory=InboundSequence)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    space: asyncio.Condition = field(default_factory=asyncio.Condition)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # work for the writer
    websocket: object | None = None  # the connection serving it now

    @classmethod
    def new(cls, settings: Settings) -> "Session":
        return cls(OutboundWindow(capacity=settings.capacity, window=settings.window))

    async def add(self, body: str) -> None:
        """Queue ``body`` for the peer; waits while the window is at capacity."""
        async with self.space:
            await self.space.wait_for(lambda: not self.window.full)
            self.window.add(body)
        self.wake.set()


class ChannelClosed(Exception):
    """The connection under a channel closed; ``reason`` says how."""


class Channel:
    """Reliable, ordered messages over one WebSocket connection.

    ``window`` and ``inbound`` belong to the session, not the connection: they
    outlive it, so the next connection resends what this one did not get
    acknowledged. ``deliver(body)`` is the application (it may return a reply,
    which is queued in the same window); ``lock`` serialises delivery when two
    connections of one session overlap.
    """

    def __init__(self, websocket, session: Session, *,
                 deliver: Callable[[str], Awaitable[str | None]], settings: Settings,
                 on_bad_frame: Callable[[envelope.BadFrame], Awaitable[None]] | None = None) -> None:
        self.websocket, self.session, self.settings = websocket, session, settings
        self.window, self.inbound = session.window, session.inbound
        self.deliver = deliver
        self.on_bad_frame = on_bad_frame
        self.inbox: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=2 * settings.window)
        self.wake = session.wake
        self.acks_due = 0
        self.resent = 0

    async def run(self) -> None:
        """Serve the connection until it closes; raises :class:`ChannelClosed` then."""
        self.window.rewind()  # a new connection resends everything unacknowledged
        self.wake.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read())
                tasks.create_task(self._work())
                tasks.create_task(self._write())
        except* (ConnectionClosed, ChannelClosed) as group:
            raise ChannelClosed(str(group.exceptions[0])) from None

    async def _read(self) -> None:
        async for data in self.websocket:
            try:
                frame = envelope.decode(data)
            except envelope.BadFrame as exc:
                if self.on_bad_frame is not None:
                    await self.on_bad_frame(exc)
                continue
            if frame.type == "ack":
                if self.window.acknowledge(frame.fields["seq"]):
                    self.last_progress = asyncio.get_running_loop().time()
                    async with self.session.space:
                        self.session.space.notify_all()
                self.wake.set()
            elif frame.type == "msg":
                if self.inbox.full():
                    # More than the window allows: the peer ignores flow control.
                    await self.websocket.close(1008, "flow control violated")
                    continue
                self.inbox.put_nowait((frame.fields["seq"], frame.fields["body"]))
        raise ChannelClosed(f"closed with code {self.websocket.close_code}")

    async def _work(self) -> None:
        while True:
            seq, body = await self.inbox.get()
            async with self.session.lock:
                verdict = self.inbound.classify(seq) if self.settings.deduplicate else "deliver"
                if verdict == "deliver":
                    reply = await self.deliver(body)
                    self.inbound.delivered(seq, force=not self.settings.deduplicate)
                    if reply is not None:
                        await self.session.add(reply)
            # One acknowledgement per message received, delivered or not: a
            # duplicate or a gap re-acknowledges, which tells the sender where
            # to go back to, and one lost acknowledgement is covered by the next.
            self.acks_due += 1
            self.wake.set()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        self.last_progress = loop.time()
        while True:
            if self.acks_due:
                self.acks_due -= 1
                await self.websocket.send(envelope.encode("ack", seq=self.inbound.ack))
                continue
            item = self.window.next_to_send()
            if item is not None:
                seq, body = item
                await self.websocket.send(envelope.encode("msg", seq=seq, body=body))
                if not self.settings.acknowledgements:
                    self.window.acknowledge(seq)  # fire and forget: sent is done
                    async with self.session.space:
                        self.session.space.notify_all()
                continue
            timeout = None
            if self.window.in_flight:
                waited = loop.time() - self.last_progress
                if waited >= self.settings.ack_timeout_s:
                    self.resent += self.window.rewind()  # go back: something was lost
                    self.last_progress = loop.time()
                    continue
                timeout = self.settings.ack_timeout_s - waited
            else:
                self.last_progress = loop.time()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                pass
