"""The production client: reconnects, keeps every message until acknowledged (lessons 03–08).

One supervisor per client, under one ``asyncio.TaskGroup``:

- the **feeder** takes messages from the application into the session's
  window, and waits while the window is at capacity (backpressure reaches
  the producer; nothing is dropped);
- the **connection loop** connects, says hello (its session and the next
  server message it expects), learns from the welcome what the server already
  has, runs a :class:`~wslab.production.channel.Channel` until the connection
  dies, then waits a backoff delay with full jitter and connects again.

Connection states, as the loop tracks them: ``connecting``, ``open``,
``backing off``; ``closed`` when the client is stopped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import uuid

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ..auth import token_expires_s
from ..errors import TokenRevoked

from . import envelope
from .backoff import Backoff
from .channel import Channel, ChannelClosed, Session
from .settings import DEFAULT, Settings

log = logging.getLogger("wslab.production")

RETRYABLE = (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, ChannelClosed,
             envelope.BadFrame)


class ReliableClient:
    """The client side of the production design for one lab client."""

    def __init__(self, app, settings: Settings = DEFAULT, *, seed: int | None = None) -> None:
        self.app, self.settings = app, settings
        self.session = Session.new(settings)
        self.session_id = new_session_id(seed)
        self.backoff = Backoff(base_s=settings.backoff_base_s, cap_s=settings.backoff_cap_s,
                               factor=settings.backoff_factor, jitter=settings.backoff_jitter,
                               rng=random.Random(seed))
        self.state = "closed"
        self.connections = 0
        self.websocket = None
        self.revoked = False
        self._feeder: asyncio.Task | None = None

    async def run(self) -> None:
        """Run until cancelled, or until ``app.stopping`` is set and :meth:`stop` is done."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._feeder = tasks.create_task(self._feed())
                connector = tasks.create_task(self._connect_forever())
                await self.app.stopping.wait()
                await self.stop()
                connector.cancel()
        finally:
            self.state = "closed"

    async def stop(self) -> list[str]:
        """Stop gracefully: take no new message, wait up to ``stop_timeout_s`` for
        every kept message to be acknowledged, close with 1000, and report each
        message still unacknowledged to the application (``app.reject``).
        Returns the messages reported."""
        self.state = "closing"
        if self._feeder is not None:
            self._feeder.cancel()
        window, space = self.session.window, self.session.space
        try:
            async with asyncio.timeout(self.settings.stop_timeout_s):
                async with space:
                    await space.wait_for(lambda: not window.unacked)
        except TimeoutError:
            pass
        undelivered = [body for _, body in window.unacked]
        for body in undelivered:
            self.app.reject(body, "not acknowledged before the client stopped")
        log.info("stopped", extra={"side": "client", "client": self.app.client_id,
                                   "undelivered": len(undelivered)})
        if self.websocket is not None:
            await self.websocket.close(1000, "client stopping")
        return undelivered

    async def _feed(self) -> None:
        """Take the application's messages into the window, by the overflow policy.

        "block" waits for room before taking a message, so the producer waits
        and a cancellation never catches a message in hand."""
        session, window, policy = self.session, self.session.window, self.settings.overflow
        while True:
            if policy == "block":
                await session.wait_for_room()
            message = await self.app.next_message()
            if message is None:
                return
            if not envelope.fits(message, self.settings.max_size_bytes):
                self.app.metrics.inc("wslab_messages_refused_total", side="client")
                self.app.reject(message, "larger than max_size")  # it could never be delivered
                continue
            if window.full and policy == "reject":
                self.app.metrics.inc("wslab_messages_refused_total", side="client")
                self.app.reject(message, "outbound queue full")
                continue
            if window.full and policy == "drop_oldest":
                dropped = window.drop_oldest_unsent()
                if dropped is not None:
                    self.app.metrics.inc("wslab_messages_refused_total", side="client")
                    self.app.reject(dropped, "dropped: a newer message replaced it")
            session.keep(message)
            depth = len(window.unacked)
            self.app.gauge("outbound", depth)
            self.app.metrics.set("wslab_outbound_queue_depth", depth, side="client")

    def connect_options(self) -> dict:
        """The keyword arguments of every connection: keepalive, timeouts, limits."""
        settings = self.settings
        return dict(ping_interval=settings.ping_interval_s, ping_timeout=settings.ping_timeout_s,
                    close_timeout=settings.close_timeout_s, open_timeout=settings.open_timeout_s,
                    max_size=settings.max_size_bytes, max_queue=settings.max_queue_frames,
                    write_limit=settings.write_limit_bytes)

    async def _connect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        refused_in_a_row = 0  # 4401s at the hello, with a fresh token each time
        while True:
            self.state = "connecting"
            started = loop.time()
            websocket = None
            try:
                token = await self.app.fetch_token() if self.settings.require_token else None
                async with self.app.connect(**self.connect_options()) as websocket:
                    await self._hello(websocket, token)
                    self.websocket = websocket
                    self.state, self.connections = "open", self.connections + 1
                    started = loop.time()
                    await self._serve(websocket, token)
            except TokenRevoked:
                return await self._revoked()
            except RETRYABLE as exc:
                if self.state == "connecting":
                    self.app.metrics.inc("wslab_connect_failures_total", side="client")
                    log.info("connect failed", extra={"side": "client", "client": self.app.client_id,
                                                      "error": type(exc).__name__})
            code = getattr(websocket, "close_code", None)
            if code == envelope.FORBIDDEN or self.revoked:
                return await self._revoked()
            if code == envelope.NOT_YOUR_SESSION:
                # Another subject holds this id: retrying cannot make it ours.
                return await self._revoked("session id held by another subject")
            if code == envelope.UNAUTHORIZED:
                # An expiry on an open connection: a new token, and straight back. A fresh
                # token refused at the hello again (a skewed clock, a wrong key): back off,
                # or this client would hammer the server in a tight loop.
                refused_in_a_row = 0 if websocket is self.websocket else refused_in_a_row + 1
                if refused_in_a_row <= 1:
                    continue
            if loop.time() - started >= self.settings.stable_after_s:
                self.backoff.reset()
            self.state = "backing off"
            await asyncio.sleep(self.backoff.next_delay())

    async def _serve(self, websocket, token: str | None) -> None:
        metrics = self.app.metrics
        metrics.inc("wslab_connections_opened_total", side="client")
        if self.connections > 1:
            metrics.inc("wslab_reconnects_total", side="client")
        fields = {"side": "client", "client": self.app.client_id,
                  "session": self.session_id[:8], "conn": str(websocket.id)[:8]}
        log.info("connected", extra={**fields, "attempt": self.backoff.attempt,
                                     "unacknowledged": len(self.session.window.unacked)})
        channel = Channel(websocket, self.session, deliver=self._deliver, settings=self.settings,
                          side="client", metrics=metrics, fields=fields)
        closed: ChannelClosed | None = None
        async with asyncio.TaskGroup() as tasks:
            refresher = tasks.create_task(self._refresh(websocket, token, fields))
            try:
                await channel.run()
            except ChannelClosed as exc:
                closed = exc  # raised inside the group, it would come out as an ExceptionGroup
            finally:
                refresher.cancel()
        if closed is not None:
            raise closed

    async def _refresh(self, websocket, token: str | None, fields: dict) -> None:
        """Send a fresh token before the current one expires (lesson 09).

        With ``refresh_when_left == 0`` it never does: the server closes 4401
        at expiry and the client reconnects with a new token instead.
        """
        if token is None or not self.settings.refresh_when_left:
            return
        try:
            while True:
                left = token_expires_s(token) - self.app.now()
                await asyncio.sleep(max(0.0, left * (1 - self.settings.refresh_when_left)))
                token = await self.app.fetch_token()
                await websocket.send(envelope.encode("auth", token=token))
                self.app.metrics.inc("wslab_token_refreshes_total", side="client")
                log.info("token refreshed", extra=fields)
        except TokenRevoked:
            log.info("session revoked: closing", extra=fields)
            await websocket.close(1000, "session revoked")
            self.revoked = True
        except ConnectionClosed:
            pass  # the channel ends too

    async def _revoked(self, reason: str = "session revoked") -> None:
        """Revoked (or refused for good): stop, and tell the application about
        every message held and every message still to come (rejected with
        ``reason``, never silently lost)."""
        self.state = "revoked"
        log.info("revoked: giving up", extra={"side": "client", "client": self.app.client_id,
                                              "reason": reason,
                                              "undelivered": len(self.session.window.unacked)})
        if self._feeder is not None:
            self._feeder.cancel()
        for body in self.session.window.clear():
            self.app.reject(body, reason)
        async for message in self.app.outgoing():
            self.app.reject(message, reason)

    async def _hello(self, websocket, token: str | None) -> None:
        hello = {"session": self.session_id, "down_next": self.session.inbound.next_expected}
        if token is not None:
            hello["token"] = token
        await websocket.send(envelope.encode("hello", **hello))
        async with asyncio.timeout(self.settings.open_timeout_s):
            frame = envelope.decode(await websocket.recv())
        if frame.type != "welcome":
            raise envelope.BadFrame("unknown_type", f"expected welcome, got {frame.type}")
        if missed := frame.fields.get("missed"):
            # Said plainly: these server messages are gone (beyond its replay window).
            self.app.metrics.inc("wslab_messages_missed_total", missed, side="client")
            log.info("missed messages", extra={"side": "client", "client": self.app.client_id,
                                               "missed": missed})
        # The server already has everything before up_next: forget it.
        async with self.session.space:
            self.session.window.acknowledge(frame.fields["up_next"] - 1)
            self.session.space.notify_all()

    async def _deliver(self, body: str) -> None:
        await self.app.deliver(body)
        return None


def new_session_id(seed: int | None = None) -> str:
    """A session id: 128 bits from :mod:`secrets`, so nobody can guess it.

    With a ``seed`` (the lab passes ``app.seed``, so that a run is replayed
    exactly) it is derived from the seed instead, and anyone who knows the
    seed can derive it too: the server's ownership check
    (``bind_sessions_to_subject``), not the id, is what protects a seeded
    session. Lesson 09 derives one to show the attack."""
    if seed is None:
        return secrets.token_hex(16)
    return uuid.UUID(int=random.Random(seed).getrandbits(128)).hex


def make_client(settings: Settings):
    """The design contract's client with these settings: a :class:`ReliableClient`."""

    async def production_client(app) -> None:
        await ReliableClient(app, settings, seed=app.seed).run()

    return production_client


client = make_client(DEFAULT)
