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
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from websockets.exceptions import ConnectionClosed

from . import envelope
from .reliable import InboundSequence, OutboundWindow
from .settings import Settings

log = logging.getLogger("wslab.production")
log.setLevel(logging.INFO)

# Acknowledgements are cumulative: one may stand for up to this many messages
# received. Fewer frames under load; a lost one is still covered by the next.
ACK_BATCH = 4

# A wait shorter than this counts as expired: float rounding can leave ~1e-16 s,
# a timer due "now" that never advances a virtual clock (a livelock).
TIMEOUT_TOLERANCE_S = 1e-6


def _remaining(timeout_s: float, waited_s: float) -> float:
    """Seconds left of ``timeout_s`` after ``waited_s``: 0.0 when it has run
    out or is within :data:`TIMEOUT_TOLERANCE_S` of it, else at least that."""
    left = timeout_s - waited_s
    return left if left >= TIMEOUT_TOLERANCE_S else 0.0


METRICS_HELP = {
    "wslab_connections_opened_total": "WebSocket connections opened (handshake and hello done)",
    "wslab_reconnects_total": "connections opened after the first one",
    "wslab_connections_open": "connections serving a session now",
    "wslab_messages_missed_total": "server messages beyond the replay window, refused and told",
    "wslab_token_refreshes_total": "tokens refreshed in-band, before they expired",
    "wslab_auth_refused_total": "connections closed for a missing, expired or revoked token",
    "wslab_sessions_shed_total": "sessions refused with 1013 to shed load",
    "wslab_messages_refused_total": "messages refused by the overflow policy, and said so",
    "wslab_connect_failures_total": "connection attempts that failed",
    "wslab_messages_sent_total": "message frames written, resends included",
    "wslab_messages_resent_total": "message frames sent again (reconnection or no acknowledgement)",
    "wslab_messages_acked_total": "messages acknowledged by the peer",
    "wslab_messages_delivered_total": "messages handed to the application",
    "wslab_duplicates_dropped_total": "copies of already delivered messages, dropped",
    "wslab_gaps_dropped_total": "messages that came before their turn, dropped",
    "wslab_ack_timeouts_total": "times the sender went back for lack of acknowledgement",
    "wslab_fast_resends_total": "times the sender went back because the peer reported a gap",
    "wslab_bad_frames_total": "frames that broke the protocol, answered with an error",
    "wslab_handshakes_refused_total": "connections closed 1008 for lack of a hello",
    "wslab_sessions_refused_total": "hellos refused: another subject's session (4409), store full (1013)",
    "wslab_sessions_evicted_total": "sessions evicted from the store (idle past the ttl, a bound reached)",
    "wslab_connections_cut_total": "connections closed 1008 for too many bad frames",
    "wslab_outbound_queue_depth": "messages kept until acknowledged",
    "wslab_ping_rtt_seconds": "round-trip time of the last keepalive ping",
}


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

    async def wait_for_room(self) -> None:
        """Wait until the window is below capacity. Wait *before* taking a
        message from the application: a task cancelled while it holds a
        message it has not kept would lose it."""
        async with self.space:
            await self.space.wait_for(lambda: not self.window.full)

    def keep(self, body: str) -> None:
        """Keep ``body`` for the peer now (never waits, never drops)."""
        self.window.add(body, force=True)
        self.wake.set()


class ChannelClosed(Exception):
    """The connection under a channel closed; ``reason`` says how."""


class Channel:
    """Reliable, ordered messages over one WebSocket connection.

    ``window`` and ``inbound`` belong to the session, not the connection: they
    outlive it, so the next connection resends what this one did not get
    acknowledged. ``deliver(body)`` is the application (it may return a reply,
    which is queued in the same window); ``lock`` serialises delivery when two
    connections of one session overlap. A frame that breaks the protocol is
    answered through ``on_bad_frame``, up to ``settings.max_bad_frames`` of
    them; the next one closes the connection with 1008.
    """

    def __init__(self, websocket, session: Session, *,
                 deliver: Callable[[str], Awaitable[str | None]], settings: Settings,
                 side: str, metrics, fields: dict,
                 on_bad_frame: Callable[[envelope.BadFrame], Awaitable[None]] | None = None,
                 on_frame: Callable[[envelope.Envelope], Awaitable[None]] | None = None) -> None:
        self.websocket, self.session, self.settings = websocket, session, settings
        self.side, self.metrics, self.fields = side, metrics, fields
        for name, text in METRICS_HELP.items():
            metrics.describe(name, text)
        self.window, self.inbound = session.window, session.inbound
        self.deliver = deliver
        self.on_bad_frame = on_bad_frame
        self.on_frame = on_frame  # any other frame type (hello, auth...)
        self.inbox: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=2 * settings.window)
        self.wake = session.wake
        self.acks_due = 0
        self.resend_due = False  # a gap was seen: ask the peer to go back
        self.rewound_for = -1  # the oldest sequence number of the last fast resend
        self.bad_frames = 0

    async def run(self) -> None:
        """Serve the connection until it closes; raises :class:`ChannelClosed` then.

        A closed connection ends the reader normally, and the channel cancels
        the worker and the writer itself: no task fails, so the task group
        never cancels its caller (which would leave a stray cancellation
        request behind on Python 3.11).
        """
        if resending := self.window.in_flight:  # sent on the last connection, never acknowledged
            self.metrics.inc("wslab_messages_resent_total", resending, side=self.side)
        self.window.rewind()  # a new connection resends everything unacknowledged
        self.wake.set()
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(self._read())
            others = [tasks.create_task(self._work()), tasks.create_task(self._write())]
            done, _ = await asyncio.wait([reader, *others], return_when=asyncio.FIRST_COMPLETED)
            for task in others:
                task.cancel()
            reader.cancel()
        reason = f"closed with code {self.websocket.close_code}"
        log.info("disconnected", extra={**self.fields, "reason": reason,
                                        "unacknowledged": len(self.window.unacked)})
        raise ChannelClosed(reason)

    async def _read(self) -> None:
        try:
            await self._read_frames()
        except ConnectionClosed:
            pass  # the connection is gone: the channel ends

    async def _read_frames(self) -> None:
        async for data in self.websocket:
            try:
                frame = envelope.decode(data)
            except envelope.BadFrame as exc:
                self.metrics.inc("wslab_bad_frames_total", side=self.side, code=exc.code)
                log.info("bad frame", extra={**self.fields, "code": exc.code})
                self.bad_frames += 1
                if self.bad_frames > self.settings.max_bad_frames:
                    # Answering every bad frame would let one client keep this
                    # loop busy while the others wait: past the budget, cut it.
                    self.metrics.inc("wslab_connections_cut_total", side=self.side,
                                     reason="bad frames")
                    log.info("too many bad frames: closing 1008", extra=self.fields)
                    await self.websocket.close(1008, "too many bad frames")
                    return
                if self.on_bad_frame is not None:
                    await self.on_bad_frame(exc)
                continue
            if frame.type == "ack":
                if acked := self.window.acknowledge(frame.fields["seq"]):
                    self.metrics.inc("wslab_messages_acked_total", acked, side=self.side)
                    self.metrics.set("wslab_outbound_queue_depth", len(self.window.unacked),
                                     side=self.side)
                    self.last_progress = asyncio.get_running_loop().time()
                    async with self.session.space:
                        self.session.space.notify_all()
                if frame.fields.get("resend"):
                    self._fast_resend()
                self.wake.set()
            elif frame.type == "msg":
                seq = frame.fields["seq"]
                bodies = frame.fields.get("bodies") or [frame.fields["body"]]
                if self.inbox.maxsize - self.inbox.qsize() < len(bodies):
                    # More than the window allows: the peer ignores flow control.
                    log.info("flow control violated", extra=self.fields)
                    await self.websocket.close(1008, "flow control violated")
                    continue
                for offset, body in enumerate(bodies):
                    self.inbox.put_nowait((seq + offset, body))
            elif self.on_frame is not None:
                await self.on_frame(frame)

    async def _work(self) -> None:
        while True:
            seq, body = await self.inbox.get()
            async with self.session.lock:
                verdict = self.inbound.classify(seq) if self.settings.deduplicate else "deliver"
                if verdict != "deliver":
                    self.metrics.inc("wslab_duplicates_dropped_total" if verdict == "duplicate"
                                     else "wslab_gaps_dropped_total", side=self.side)
                    log.info(f"{verdict} dropped", extra={**self.fields, "seq": seq,
                                                         "expected": self.inbound.next_expected})
                if verdict == "deliver":
                    reply = await self.deliver(body)
                    self.metrics.inc("wslab_messages_delivered_total", side=self.side)
                    self.inbound.delivered(seq, force=not self.settings.deduplicate)
                    if reply is not None:
                        self.session.keep(reply)  # the peer's credit bounds these
            # Acknowledge every message received, delivered or not; a gap asks
            # the sender to go back now, rather than after ack_timeout_s.
            self.acks_due += 1
            self.resend_due = self.resend_due or verdict == "gap"
            self.wake.set()

    def _fast_resend(self) -> None:
        """The peer saw a gap (a message was lost): go back to the oldest
        unacknowledged message, once per gap (later gap reports of the same
        loss are the messages already in flight behind it)."""
        if not self.window.in_flight:
            return
        oldest = self.window.unacked[0][0]
        if oldest == self.rewound_for:
            return
        self.rewound_for = oldest
        rewound = self.window.rewind()
        self.metrics.inc("wslab_fast_resends_total", side=self.side)
        self.metrics.inc("wslab_messages_resent_total", rewound, side=self.side)
        self.last_progress = asyncio.get_running_loop().time()

    async def _write(self) -> None:
        try:
            await self._write_frames()
        except ConnectionClosed:
            pass  # the reader sees the close too

    async def _write_frames(self) -> None:
        loop = asyncio.get_running_loop()
        self.last_progress = loop.time()
        while True:
            if self.acks_due:
                self.acks_due = max(0, self.acks_due - ACK_BATCH)
                if self.resend_due:
                    self.resend_due = False
                    frame = envelope.encode("ack", seq=self.inbound.ack, resend=True)
                else:
                    frame = envelope.encode("ack", seq=self.inbound.ack)
                await self.websocket.send(frame)
                continue
            item = self.window.next_to_send()
            if item is not None:
                seq, body = item
                bodies = [body]
                # Batch what is ready, up to batch_max messages and the peer's max_size:
                # a frame over it is refused (1009), and resent, and refused again.
                budget = self.settings.max_size_bytes - envelope.FRAME_OVERHEAD_BYTES
                size = envelope.body_size(body)
                while len(bodies) < self.settings.batch_max and (
                        more := self.window.peek()) is not None:
                    size += envelope.body_size(more[1])
                    if size > budget:
                        break
                    self.window.next_to_send()
                    bodies.append(more[1])  # numbered seq + 1, seq + 2...
                if len(bodies) == 1:
                    frame = envelope.encode("msg", seq=seq, body=body)
                else:
                    frame = envelope.encode("msg", seq=seq, bodies=bodies)
                await self.websocket.send(frame)
                self.metrics.inc("wslab_messages_sent_total", len(bodies), side=self.side)
                if not self.settings.acknowledgements:
                    self.window.acknowledge(seq + len(bodies) - 1)  # fire and forget
                    async with self.session.space:
                        self.session.space.notify_all()
                continue
            timeout = None
            if self.window.in_flight:
                timeout = _remaining(self.settings.ack_timeout_s,
                                     loop.time() - self.last_progress)
                if not timeout:
                    rewound = self.window.rewind()  # go back: something was lost
                    self.metrics.inc("wslab_ack_timeouts_total", side=self.side)
                    self.metrics.inc("wslab_messages_resent_total", rewound, side=self.side)
                    log.info("no acknowledgement: going back", extra={
                        **self.fields, "seq": self.window.unacked[0][0], "resending": rewound})
                    self.last_progress = loop.time()
                    continue
                latency = getattr(self.websocket, "latency", 0)
                if latency:
                    self.metrics.set("wslab_ping_rtt_seconds", latency, side=self.side)
            else:
                self.last_progress = loop.time()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                pass
