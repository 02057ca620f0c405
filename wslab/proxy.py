"""FaultProxy: a TCP proxy on loopback that applies a fault plan to real bytes.

Every client of a run connects to the proxy, which opens one upstream
connection to the server per client connection and forwards bytes both ways.
The proxy reads the HTTP request line of the WebSocket handshake to learn
which lab client is connecting (the path ``/c/<id>`` the lab gave it) and
removes the ``Sec-WebSocket-Extensions`` header so that no compression is
negotiated: frames stay readable, and dropping one cannot corrupt a shared
compression context.

Guarantees:

- With no fault in force for a direction, bytes are forwarded in the same
  callback that received them, with flow control (reading pauses while the
  other side's write buffer is full).
- Order is kept within a direction, under latency with jitter too, except for
  frames a :class:`~wslab.faults.FrameFault` delays or duplicates on purpose.
- Every socket the proxy opened is closed by :meth:`FaultProxy.close`.
- Under an :class:`~wslab.faults.IdleTimeout`, a connection is forgotten at
  the moment :meth:`~wslab.faults.FaultPlan.forgotten_at` gives for its last
  byte (a timer of the loop, so in lab time), recorded as an ``"idle
  timeout"`` event; a byte or a FIN that reaches the proxy later than that
  finds it forgotten. Every byte read from either socket, and the connection
  being opened, counts as activity.

The proxy decides nothing about faults: its plan does
(:meth:`~wslab.faults.FaultPlan.network` for the bytes of a direction at a
moment, :meth:`~wslab.faults.FaultPlan.admission` for a new connection, which
fails in one of the outage flavours of :data:`~wslab.faults.FLAVOURS`), and
the proxy carries the decisions out: a reset after the upgrade request, a
``503 Service Unavailable`` answer, silence, or (:meth:`FaultProxy.listen`,
at the moments the lab's nemesis takes from the plan) no listening socket.
Random draws (jitter, frame probability) come from one ``random.Random(seed)``. In a test, :meth:`FaultProxy.faulty`
applies faults for the duration of a ``with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import random
import re
import socket
import struct
import termios
from collections import deque
from collections.abc import Iterator
from typing import Any

from .errors import ConfigError
from .faults import (NETWORK_FAULTS, BlackHole, Cut, Fault, FaultPlan, FrameFault, IdleTimeout,
                     NetworkEffect)
from .frames import Frame, FrameParser

HOST = "127.0.0.1"
_HEADER_END = b"\r\n\r\n"
_MAX_HEADER = 64 * 1024
_PATH = re.compile(rb"^GET /c/(\d+)[/? ]")
_EXTENSIONS = re.compile(rb"\r\nSec-WebSocket-Extensions:[^\r]*", re.IGNORECASE)
_QUEUE_HIGH = 1 << 20
_RESPONSE_503 = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 20\r\nConnection: close\r\n\r\nno healthy upstream\n")
BACKLOG = 2048  # a reconnect storm of 1,000 clients must not overflow the accept queue


def _reset(transport: asyncio.BaseTransport | None) -> None:
    """Close a TCP transport with a reset (RST), not a polite FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def queued_bytes(transport: asyncio.BaseTransport | None) -> int:
    """Bytes waiting on one TCP socket: the transport's write buffer plus the
    kernel's send and receive queues (Linux ``SIOCOUTQ`` / ``SIOCINQ``)."""
    if transport is None or transport.is_closing():
        return 0
    total = transport.get_write_buffer_size()  # type: ignore[attr-defined]
    sock = transport.get_extra_info("socket")
    if sock is not None:
        for request in (termios.TIOCOUTQ, termios.FIONREAD):
            try:
                total += struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0]
            except OSError:
                pass
    return total


class _Pipe:
    """One direction of one proxied connection: faults applied, bytes forwarded."""

    def __init__(self, conn: "ProxyConnection", direction: str) -> None:
        self.conn = conn
        self.direction = direction
        self.proxy = conn.proxy
        self.dst: asyncio.Transport | None = None
        self.src: asyncio.Transport | None = None
        self.queue: deque[tuple[float, bytes, bool]] = deque()  # (due, chunk, in order)
        self.queued_bytes = 0
        self.last_due = 0.0  # of the last chunk kept in order
        self.in_order_queued = 0
        self.timer: asyncio.TimerHandle | None = None
        self.header_done = False
        self.header = bytearray()
        self.parser: FrameParser | None = None
        self.black_holed = False
        self.dropped_bytes = 0
        self.src_paused = False

    # Input ------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if not self.header_done:
            self.header += data
            end = self.header.find(_HEADER_END)
            if end < 0:
                if len(self.header) > _MAX_HEADER:
                    self.conn.reset("handshake header too long")
                return
            head, rest = bytes(self.header[: end + 4]), bytes(self.header[end + 4 :])
            self.header_done = True
            self.header = bytearray()
            if self.proxy.plan.has(FrameFault, self.direction):
                self.parser = FrameParser()
            if self.direction == "up":
                self.conn.on_request(head, rest)
                return
            self._forward(head, parse=False)
            data = rest
            if not data:
                return
        self._forward(data)

    def _forward(self, data: bytes, *, parse: bool = True) -> None:
        proxy = self.proxy
        t = proxy.now()
        effect = None if self.black_holed else proxy.plan.network(t, self.direction, self.conn.client_id)
        if effect is None or effect.black_hole:
            self.black_holed = True  # for as long as the connection lives
            self.dropped_bytes += len(data)
            return
        if self.parser is not None and parse:
            chunks = self._act_on_frames(self.parser.feed(data), effect)
        else:
            chunks = [(0.0, data)]
        for extra_s, chunk in chunks:
            due = t + effect.delay_s(proxy.rng.uniform, after_s=extra_s)
            if effect.bytes_per_s is not None:
                due = max(due, self.last_due) + len(chunk) / effect.bytes_per_s
            in_order = not extra_s  # a FrameFault delay reorders on purpose
            if in_order:
                # TCP keeps order within a direction; so do we.
                if due <= t and not self.in_order_queued:
                    self._write(chunk)
                    continue
                due = max(due, self.last_due)
                self.last_due = due
            self._enqueue(due, chunk, in_order)

    def _act_on_frames(self, frames: list[Frame], effect: NetworkEffect) -> list[tuple[float, bytes]]:
        """Each frame's bytes with the extra delay a frame fault gives it (dropped ones left out)."""
        out: list[tuple[float, bytes]] = []
        for frame in frames:
            action = effect.frame_action(frame, self.proxy.rng.random)
            if action is None:
                out.append((0.0, frame.raw))
            elif action.action == "drop":
                self.proxy.frames_dropped += 1
            elif action.action == "duplicate":
                out += [(0.0, frame.raw), (0.0, frame.raw)]
                self.proxy.frames_duplicated += 1
            else:
                out.append((action.delay_s, frame.raw))
                self.proxy.frames_delayed += 1
        return out

    # Output -----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.dst is not None and not self.dst.is_closing():
            self.dst.write(data)

    def _enqueue(self, due: float, chunk: bytes, in_order: bool) -> None:
        item = (due, chunk, in_order)
        if self.queue and due < self.queue[-1][0]:
            self.queue = deque(sorted([*self.queue, item], key=lambda entry: entry[0]))
        else:
            self.queue.append(item)
        self.in_order_queued += in_order
        self.queued_bytes += len(chunk)
        if self.queued_bytes > _QUEUE_HIGH and self.src is not None and not self.src_paused:
            self.src_paused = True
            self.src.pause_reading()
        self._schedule()

    def _schedule(self) -> None:
        if self.timer is not None or not self.queue:
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(self.proxy.t0 + self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        now = self.proxy.now()
        while self.queue and self.queue[0][0] <= now + 0.0005:
            _, chunk, in_order = self.queue.popleft()
            self.queued_bytes -= len(chunk)
            self.in_order_queued -= in_order
            self._write(chunk)
        if self.src_paused and self.queued_bytes < _QUEUE_HIGH // 4 and self.src is not None:
            self.src_paused = False
            if not self.src.is_closing():
                self.src.resume_reading()
        if self.queue:
            self._schedule()
        elif self.conn.closing:
            self.conn.maybe_finish_close()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued_bytes = self.in_order_queued = 0


class _Side(asyncio.Protocol):
    """asyncio protocol for one socket of a proxied connection."""

    def __init__(self, conn: "ProxyConnection", incoming: _Pipe, outgoing: _Pipe) -> None:
        self.conn = conn
        self.incoming = incoming  # bytes read from this socket go into this pipe
        self.outgoing = outgoing  # this pipe writes to this socket
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.outgoing.dst = self.transport
        self.incoming.src = self.transport

    def data_received(self, data: bytes) -> None:
        self.conn.touch()
        self.incoming.feed(data)

    def eof_received(self) -> bool | None:
        return None  # close this socket; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.side_lost(self)

    def pause_writing(self) -> None:
        src = self.outgoing.src
        if src is not None and not src.is_closing():
            src.pause_reading()

    def resume_writing(self) -> None:
        src = self.outgoing.src
        if src is not None and not src.is_closing() and not self.outgoing.src_paused:
            src.resume_reading()


class ProxyConnection:
    """One client connection through the proxy and its upstream connection."""

    def __init__(self, proxy: "FaultProxy") -> None:
        self.proxy = proxy
        self.client_id: int | None = None
        self.up = _Pipe(self, "up")
        self.down = _Pipe(self, "down")
        self.client_side = _Side(self, incoming=self.up, outgoing=self.down)
        self.server_side: _Side | None = None
        self.closing = False
        self.closed = False
        self.connect_task: asyncio.Task | None = None
        # IdleTimeout: when a byte last crossed, either way (lab time; kept while one watches).
        self.last_byte_s = proxy.now()
        self.forgotten = False
        self.idle_due_s: float | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        self.watch_idle()

    @property
    def black_holed(self) -> bool:
        return self.up.black_holed or self.down.black_holed

    def touch(self) -> None:
        """Something (bytes, a FIN) reached the proxy from either side now: the flow
        is in use, unless an idle timeout forgot it before (then it stays forgotten).
        Costs nothing (not even a clock reading) while no idle timeout watches it."""
        if self.idle_timer is None:  # none watches it, or it is forgotten already
            return
        now = self.proxy.now()
        due = self.proxy.plan.forgotten_at(self.last_byte_s, self.client_id)
        if due is not None and due <= now:
            self.forget()
        else:
            self.last_byte_s = now

    def watch_idle(self) -> None:
        """(Re)arm the timer for the moment the plan forgets this flow if no byte
        crosses it (:meth:`~wslab.faults.FaultPlan.forgotten_at`); none when never."""
        self._stop_watching_idle()
        if self.forgotten or self.closed:
            return
        due = self.proxy.plan.forgotten_at(self.last_byte_s, self.client_id)
        if due is not None:
            self.idle_due_s = due
            at = self.proxy.t0 + due  # type: ignore[operator]  # t0 is set once it listens
            self.idle_timer = asyncio.get_running_loop().call_at(at, self._idle_timer_fired)

    def _idle_timer_fired(self) -> None:
        armed_for, self.idle_timer = self.idle_due_s, None
        due = self.proxy.plan.forgotten_at(self.last_byte_s, self.client_id)
        if due is not None and armed_for is not None and due <= armed_for:
            self.forget()  # no byte since the timer was armed: idle for idle_s
        else:
            self.watch_idle()  # a byte came, or the plan changed

    def _stop_watching_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.idle_timer = self.idle_due_s = None

    def forget(self) -> None:
        """An idle timeout forgot the flow: from now on its bytes vanish both ways
        and neither side hears of it (as under a black hole), until it is closed."""
        if self.forgotten or self.closed:
            return
        self.forgotten = True
        self._stop_watching_idle()
        self.up.black_holed = self.down.black_holed = True
        self.proxy.record(self.client_id, "idle timeout")

    def on_request(self, head: bytes, rest: bytes) -> None:
        """The client's handshake request is complete: decide, then connect upstream."""
        match = _PATH.match(head)
        self.client_id = int(match.group(1)) if match else None
        self.watch_idle()  # an idle timeout may concern this client only
        proxy = self.proxy
        t = proxy.now()
        proxy.record(self.client_id, "accept")
        flavour = proxy.plan.admission(t, self.client_id)
        if flavour is not None:
            self.fail(flavour)
            return
        head = _EXTENSIONS.sub(b"", head)
        self.up.src_paused = True
        self.client_side.transport.pause_reading()  # type: ignore[union-attr]
        self.connect_task = asyncio.get_running_loop().create_task(self._connect(head, rest),
                                                                  name="wslab proxy connect")
        proxy.tasks.add(self.connect_task)
        self.connect_task.add_done_callback(proxy.tasks.discard)

    async def _connect(self, head: bytes, rest: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.server_side = _Side(self, incoming=self.down, outgoing=self.up)
        try:
            await loop.create_connection(lambda: self.server_side, HOST, self.proxy.upstream_port)
        except OSError:
            self.proxy.record(self.client_id, "upstream refused")
            self.reset(None)
            return
        if self.closed or self.closing:
            _reset(self.server_side.transport)
            return
        self.proxy.record(self.client_id, "open")
        self.up._forward(head, parse=False)
        if rest:
            self.up._forward(rest)
        self.up.src_paused = False
        if not self.client_side.transport.is_closing():  # type: ignore[union-attr]
            self.client_side.transport.resume_reading()  # type: ignore[union-attr]

    def fail(self, flavour: str) -> None:
        """Fail this new connection, its upgrade request read, in ``flavour``
        (:data:`~wslab.faults.FLAVOURS`); recorded as an event of that name."""
        transport = self.client_side.transport
        if flavour == "http_503":
            # What a load balancer with no healthy backend answers; then it closes.
            self.proxy.record(self.client_id, flavour)
            if transport is not None and not transport.is_closing():
                transport.write(_RESPONSE_503)
            self.closing = True
            self.finish_close()
        elif flavour == "silent":
            # Accepted, never answered: the client's open_timeout has to fire.
            self.proxy.record(self.client_id, flavour)
            self.up.black_holed = self.down.black_holed = True
        else:
            # "reset_in_handshake", or "refused" met by a connection that reached
            # the listener just before it closed: a reset is the nearest we can do.
            self.reset(flavour)

    def side_lost(self, side: _Side) -> None:
        """One socket closed: close the other after what is queued for it."""
        if self.closed:
            return
        self.touch()  # a FIN crosses the middlebox too, unless it forgot the flow
        # Through a black hole the other side never hears of it (when there is one).
        holed = self.up.black_holed if side is self.client_side else self.down.black_holed
        if holed and self.server_side is not None:
            return
        self.closing = True
        self.up.src_paused = self.down.src_paused = False
        self.maybe_finish_close()

    def maybe_finish_close(self) -> None:
        if not self.up.queue and not self.down.queue:
            self.finish_close()

    def finish_close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop_watching_idle()
        for side in (self.client_side, self.server_side):
            if side is not None and side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        self.proxy.record(self.client_id, "close")
        self.proxy.connections.discard(self)

    def reset(self, event: str | None) -> None:
        """Reset both sockets (RST), dropping whatever was queued."""
        if self.closed:
            return
        self.closed = True
        self._stop_watching_idle()
        self.up.cancel()
        self.down.cancel()
        if self.connect_task is not None and not self.connect_task.done():
            self.connect_task.cancel()
        for side in (self.client_side, self.server_side):
            if side is not None:
                _reset(side.transport)
        if event is not None:
            self.proxy.record(self.client_id, event)
        self.proxy.connections.discard(self)


class FaultProxy:
    """A loopback TCP proxy in front of ``upstream_port`` that applies ``plan``.

    Fault windows are in seconds from ``t0`` (the loop's time; by default when
    the proxy starts listening). Use as ``async with FaultProxy(...) as proxy:
    proxy.port``; leaving the block closes every socket.
    """

    def __init__(self, *, upstream_port: int, plan: FaultPlan | None = None,
                 seed: int = 0, t0: float | None = None) -> None:
        self.upstream_port = upstream_port
        self.plan = plan if plan is not None else FaultPlan()
        self.rng = random.Random(seed)
        self.t0 = t0
        self.port: int | None = None
        self.connections: set[ProxyConnection] = set()
        self.tasks: set[asyncio.Task] = set()
        self.events: list[tuple[float, int | None, str]] = []
        self.frames_dropped = self.frames_delayed = self.frames_duplicated = 0
        self._server: asyncio.AbstractServer | None = None
        self._listening = False
        self._closed = False

    def now(self) -> float:
        return asyncio.get_running_loop().time() - (self.t0 or 0.0)

    def record(self, client_id: int | None, event: str) -> None:
        self.events.append((round(self.now(), 6), client_id, event))

    async def start(self) -> int:
        """Listen on 127.0.0.1 (a free port) and return the port."""
        loop = asyncio.get_running_loop()
        if self.t0 is None:
            self.t0 = loop.time()
        try:
            await self._bind(0)
        except BaseException:  # cancelled while starting: the block's exit will not run
            await self.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._listening = True
        if not self.plan.listening(self.now()):
            await self.listen(False)
        return self.port

    async def listen(self, on: bool) -> None:
        """Listen on the proxy's port again (``on``), or close the listening socket
        so that a connect is refused (the ``"refused"`` flavour), as a server
        whose process is gone. Open connections are untouched. Refused attempts
        never reach the proxy: its events do not count them."""
        if on == self._listening or self.port is None or self._closed:
            return
        self._listening = on
        self.record(None, "listening" if on else "not listening")
        if not on:
            if self._server is not None:
                self._server.close()
            return
        await self._bind(self.port)

    async def _bind(self, port: int) -> None:
        """Listen on ``port`` (SO_REUSEADDR, asyncio's default, lets it be bound again
        at once). The server is ours before anything is awaited after binding
        (``start_serving=False``), so a cancellation cannot leave a socket unowned."""
        self._server = await asyncio.get_running_loop().create_server(
            self._accept, HOST, port, backlog=BACKLOG, start_serving=False)
        await self._server.start_serving()

    def _accept(self) -> _Side:
        conn = ProxyConnection(self)
        self.connections.add(conn)
        return conn.client_side

    async def __aenter__(self) -> "FaultProxy":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # Nemesis actions ---------------------------------------------------------

    def onset(self, fault: Fault) -> int:
        """What ``fault`` does when its window opens to the connections open then:
        a :class:`~wslab.faults.Cut` resets them, a :class:`~wslab.faults.BlackHole`
        swallows them. Return how many; 0 for a fault that acts only on bytes as
        they pass (or on new connections), or later: an
        :class:`~wslab.faults.IdleTimeout` starts watching the open connections
        (the plan must hold it already, as :meth:`faulty` sees to)."""
        if isinstance(fault, Cut):
            return self.cut(fault.clients)
        if isinstance(fault, BlackHole):
            return self.black_hole(fault.direction, fault.clients)
        if isinstance(fault, IdleTimeout):
            for conn in self.connections:
                conn.watch_idle()
        return 0

    @contextlib.contextmanager
    def faulty(self, *faults: Fault) -> Iterator[None]:
        """Apply ``faults`` for the duration of a ``with`` block, as websockets' own
        tests do with ``drop_frames_sent()``::

            with proxy.faulty(BlackHole()):
                ...  # bytes vanish both ways; the sockets stay open

        Each fault's window is the block (its own ``start_s`` and ``duration_s``
        are ignored): on entry it acts as a scheduled window does when it opens
        (:meth:`onset`), on exit its window closes. What a window leaves behind
        stays, as with a scheduled one: a black-holed connection stays so until
        it closes. A :class:`~wslab.faults.FrameFault` acts on connections
        opened inside the block (their frames are parsed from the handshake on).
        The faults stay in ``plan`` with the block's window. Only the faults the
        proxy applies (:data:`~wslab.faults.NETWORK_FAULTS`) are accepted.
        """
        for fault in faults:
            if not isinstance(fault, NETWORK_FAULTS):
                raise ConfigError(f"proxy.faulty() takes the faults the proxy applies "
                                  f"({', '.join(k.__name__ for k in NETWORK_FAULTS)}), got {fault!r}")
            if "refused" in getattr(fault, "flavours", ()):
                raise ConfigError("proxy.faulty() cannot refuse connections (closing the listening "
                                  "socket takes an await): use `await proxy.listen(False)` and "
                                  "`await proxy.listen(True)`, or schedule the fault in the plan")
        start = self.now()
        placed = [dataclasses.replace(f, start_s=start, duration_s=None) for f in faults]
        self.plan = self.plan.with_(*placed)
        for fault in placed:
            self.onset(fault)
        try:
            yield
        finally:
            end = self.now()
            self.plan = FaultPlan(
                dataclasses.replace(f, duration_s=end - start) if any(f is p for p in placed) else f
                for f in self.plan
            )

    def cut(self, clients: frozenset[int] | None = None) -> int:
        """Reset every open connection (of ``clients``, or all); return how many."""
        victims = [c for c in self.connections if clients is None or c.client_id in clients]
        for conn in victims:
            conn.reset("reset")
        return len(victims)

    def black_hole(self, direction: str, clients: frozenset[int] | None = None) -> int:
        """Black-hole every open connection in ``direction``; return how many."""
        victims = [c for c in self.connections if clients is None or c.client_id in clients]
        for conn in victims:
            for pipe in (conn.up, conn.down):
                if direction in ("both", pipe.direction):
                    pipe.black_holed = True
        return len(victims)

    # Readings ------------------------------------------------------------------

    def buffered_bytes(self) -> int:
        """Bytes held by the proxy: delayed chunks and what waits on its sockets."""
        total = 0
        for conn in self.connections:
            for pipe in (conn.up, conn.down):
                total += pipe.queued_bytes + queued_bytes(pipe.dst)
        return total

    def open_clients(self) -> int:
        """Connections forwarding right now (handshake started, not closed)."""
        return sum(1 for c in self.connections if c.server_side is not None and not c.closing)

    async def close(self) -> None:
        """Stop listening and reset every connection still open."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.reset(None)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
