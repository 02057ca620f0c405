"""The production server handler (lessons 04–08).

Per connection: wait for the client's hello, find its session in the
server's durable store (so that a restart forgets nothing the clients were
promised), close any older connection of the same session, answer with a
welcome, then run a :class:`~wslab.production.channel.Channel` plus a
**pusher** that takes this client's messages from the application into the
session's window, under one ``asyncio.TaskGroup``.

The durable store stands for a database: the session's inbound sequence
(which client messages were processed) and its outbound window (server
messages not yet acknowledged) live there.
"""

from __future__ import annotations

import asyncio
import logging

from . import envelope
from .channel import Channel, ChannelClosed, Session
from .settings import DEFAULT, Settings

log = logging.getLogger("wslab.production")


async def handler(websocket, app, settings: Settings = DEFAULT) -> None:
    try:
        async with asyncio.timeout(settings.hello_timeout_s):
            frame = envelope.decode(await websocket.recv())
        if frame.type != "hello":
            raise envelope.BadFrame("unknown_type", "the first frame must be a hello")
    except (envelope.BadFrame, TimeoutError) as exc:
        app.metrics.inc("wslab_handshakes_refused_total", side="server")
        log.info("no hello: closing 1008", extra={"side": "server", "client": app.client_id,
                                                  "error": str(exc) or type(exc).__name__})
        await websocket.close(1008, str(exc)[:120])
        return
    memory = app.store if settings.durable_sessions else app.state
    sessions = memory.setdefault("sessions", {})
    session = sessions.get(frame.fields["session"])
    if session is None:
        session = sessions[frame.fields["session"]] = Session.new(settings)
    fields = {"side": "server", "client": app.client_id,
              "session": frame.fields["session"][:8], "conn": str(websocket.id)[:8]}
    previous, session.websocket = session.websocket, websocket
    if previous is not None and previous is not websocket:
        log.info("superseding an older connection", extra=fields)
        await previous.close(envelope.SUPERSEDED, "superseded")
    app.metrics.inc("wslab_connections_opened_total", side="server")
    log.info("session resumed" if session.inbound.next_expected or session.window.next_seq
             else "session opened", extra={**fields, "up_next": session.inbound.next_expected})
    async with session.space:
        session.window.acknowledge(frame.fields["down_next"] - 1)
        session.space.notify_all()
    await websocket.send(envelope.encode("welcome", up_next=session.inbound.next_expected))

    async def bad_frame(exc: envelope.BadFrame) -> None:
        await websocket.send(envelope.encode("error", code=exc.code, detail=exc.detail))

    async def push() -> None:
        while (message := await app.next_message()) is not None:
            await session.add(message)
        await asyncio.Future()  # nothing more to push; keep the channel company

    channel = Channel(websocket, session, deliver=app.process, settings=settings,
                      side="server", metrics=app.metrics, fields=fields, on_bad_frame=bad_frame)
    try:
        async with asyncio.TaskGroup() as tasks:
            pusher = tasks.create_task(push())
            try:
                await channel.run()
            except ChannelClosed:
                pass
            finally:
                pusher.cancel()
    finally:
        if session.websocket is websocket:
            session.websocket = None


def make_handler(settings: Settings):
    """The handler with these settings (the design contract's shape)."""

    async def production_handler(websocket, app) -> None:
        await handler(websocket, app, settings)

    return production_handler


def serve_options(settings: Settings = DEFAULT) -> dict:
    """Keyword arguments for ``websockets.asyncio.server.serve``."""
    return {
        "ping_interval": settings.ping_interval_s,
        "ping_timeout": settings.ping_timeout_s,
        "close_timeout": settings.close_timeout_s,
        "max_size": settings.max_size_bytes,
    }
