"""The production server handler (lessons 04–09).

Per connection: wait for the client's hello, find its session in the
server's durable store (so that a restart forgets nothing the clients were
promised), close any older connection of the same session, answer with a
welcome, then run a :class:`~wslab.production.channel.Channel` plus a
**pusher** that takes this client's messages from the application into the
session's window, under one ``asyncio.TaskGroup``.

The durable store stands for a database: the session's inbound sequence
(which client messages were processed) and its outbound window (server
messages not yet acknowledged) live there, in a
:class:`~wslab.production.sessions.SessionStore`.

What a hostile client cannot do (each answer is in :mod:`.envelope`'s table):

- **take another subject's session**: a hello whose session id belongs to
  another subject is closed 4409 before anything about the session is read
  or said; the owner's connection is not superseded and loses nothing
  (``bind_sessions_to_subject``; without tokens the id is the credential);
- **grow the server's memory without bound**: sessions are bounded per
  subject and in all, idle ones expire, ids longer than
  ``max_session_id_chars`` are refused 1008; every eviction is logged
  ("session evicted", with its reason) and counted
  (``wslab_sessions_evicted_total``), and the messages it held are refused
  to the application, not lost;
- **crash the handler with a frame**: :func:`.envelope.decode` refuses any
  input with :class:`.envelope.BadFrame`, its limits applied before the
  token is checked; the handler never ends in 1011 for the client's input;
- **keep the server busy answering garbage**: past ``max_bad_frames``
  frames that break the protocol, the connection is closed 1008;
- **hold a slot with a half-open handshake**: :func:`serve_options` passes
  ``open_timeout``, so the library closes a handshake that does not finish
  within ``open_timeout_s``; a connection that says no hello within
  ``hello_timeout_s`` is closed 1008.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.exceptions import ConnectionClosed

from ..errors import AuthError
from . import envelope
from . import sessions
from .channel import Channel, ChannelClosed, Session
from .sessions import SessionStore
from .settings import DEFAULT, Settings

log = logging.getLogger("wslab.production")


async def handler(websocket, app, settings: Settings = DEFAULT) -> None:
    try:
        async with asyncio.timeout(settings.hello_timeout_s):
            frame = envelope.decode(await websocket.recv())
        if frame.type != "hello":
            raise envelope.BadFrame("unknown_type", "the first frame must be a hello")
        if len(frame.fields["session"]) > settings.max_session_id_chars:
            raise envelope.BadFrame("bad_field", f"hello.session is at most "
                                    f"{settings.max_session_id_chars} characters")
    except ConnectionClosed:
        return  # gone before it said hello: nothing to serve, nothing lost
    except (envelope.BadFrame, TimeoutError) as exc:
        app.metrics.inc("wslab_handshakes_refused_total", side="server")
        log.info("no hello: closing 1008", extra={"side": "server", "client": app.client_id,
                                                  "error": str(exc) or type(exc).__name__})
        await websocket.close(1008, str(exc)[:120])
        return
    token = _Token(app, settings)
    if settings.require_token and not await token.accept(websocket, frame.fields.get("token")):
        return
    live = app.state.setdefault("live_sessions", set())
    if settings.max_sessions is not None and len(live) >= settings.max_sessions:
        # Shed load: refuse now, cheaply, rather than serve everyone badly.
        app.metrics.inc("wslab_sessions_shed_total", side="server")
        await websocket.close(1013, "try again later")
        return
    session_id = frame.fields["session"]
    fields = {"side": "server", "client": app.client_id,
              "session": session_id[:8], "conn": str(websocket.id)[:8]}
    store = _store(app, settings)
    claim = store.claim(session_id, token.subject, app.now(), lambda: Session.new(settings))
    _report_evictions(app, claim.evicted, fields)
    if claim.session is None:
        await _refuse_session(app, websocket, claim.verdict, fields)
        return
    session = claim.session
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
    missed = await _trim_to_replay_window(app, session, settings, fields)
    try:
        await websocket.send(envelope.encode("welcome", up_next=session.inbound.next_expected,
                                             missed=missed))
    except ConnectionClosed:
        _detach(app, store, session_id, session, websocket)
        return

    async def bad_frame(exc: envelope.BadFrame) -> None:
        await websocket.send(envelope.encode("error", code=exc.code, detail=exc.detail))

    async def push() -> None:
        while True:
            await session.wait_for_room()
            message = await app.next_message()
            if message is None:
                return
            if not envelope.fits(message, settings.max_size_bytes):
                app.reject(message, "larger than max_size")  # it could never be delivered
                continue
            session.keep(message)

    async def other_frame(frame: envelope.Envelope) -> None:
        if frame.type == "auth" and settings.require_token:
            await token.accept(websocket, frame.fields["token"])

    channel = Channel(websocket, session, deliver=app.process, settings=settings,
                      side="server", metrics=app.metrics, fields=fields, on_bad_frame=bad_frame,
                      on_frame=other_frame)
    live.add(websocket)
    app.metrics.set("wslab_connections_open", len(live), side="server")
    try:
        async with asyncio.TaskGroup() as tasks:
            helpers = [tasks.create_task(push())]
            if settings.require_token:
                helpers.append(tasks.create_task(token.enforce_expiry(websocket)))
            try:
                await channel.run()
            except ChannelClosed:
                pass
            finally:
                for helper in helpers:
                    helper.cancel()
    finally:
        live.discard(websocket)
        app.metrics.set("wslab_connections_open", len(live), side="server")
        _detach(app, store, session_id, session, websocket)


def _store(app, settings: Settings) -> SessionStore:
    """The server's session store: durable (``app.store``, survives a restart)
    or in memory (``app.state``), by ``durable_sessions``."""
    memory = app.store if settings.durable_sessions else app.state
    return memory.setdefault("sessions", SessionStore(settings))


def _detach(app, store: SessionStore, session_id: str, session: Session, websocket) -> None:
    """This connection no longer serves the session; idle from now unless a
    newer connection took it over."""
    if session.websocket is websocket:
        session.websocket = None
        store.release(session_id, app.now())


# Close code and reason of each refused claim: one fixed text each, so that a
# refusal says nothing about the session (not its state, nor whether it is live).
_REFUSALS = {sessions.NOT_YOURS: (envelope.NOT_YOUR_SESSION, "session not yours"),
             sessions.FULL: (1013, "too many sessions: try again later")}


async def _refuse_session(app, websocket, verdict: str, fields: dict) -> None:
    code, reason = _REFUSALS[verdict]
    app.metrics.inc("wslab_sessions_refused_total", side="server", reason=verdict)
    log.info("session refused", extra={**fields, "code": code, "reason": verdict})
    await websocket.close(code, reason)


def _report_evictions(app, evicted: list[sessions.Eviction], fields: dict) -> None:
    """Log and count each eviction, and refuse the messages it held (the
    application is told; nothing is lost silently)."""
    for eviction in evicted:
        app.metrics.inc("wslab_sessions_evicted_total", side="server", reason=eviction.reason)
        log.info("session evicted", extra={
            "side": "server", "client": fields["client"], "session": eviction.session_id[:8],
            "owner": eviction.owner, "reason": eviction.reason,
            "idle_s": round(eviction.idle_s, 3), "refused": len(eviction.held)})
        for body in eviction.held:
            app.reject(body, f"session evicted: {eviction.reason}")


class _Token:
    """The token of one connection: checked at the hello and on every refresh;
    the connection is closed 4401 when it expires unrefreshed (lesson 09)."""

    def __init__(self, app, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.expires_s = 0.0
        self.subject: str | None = None  # whose sessions this connection may use
        self.refreshed = asyncio.Event()

    async def accept(self, websocket, token: object) -> bool:
        """Verify ``token``; on success extend the connection, else close it."""
        try:
            claims = self.app.verify_token(token)
        except AuthError as exc:
            code = exc.close_code if token is not None else envelope.UNAUTHORIZED
            self.app.metrics.inc("wslab_auth_refused_total", side="server", code=code)
            log.info("token refused", extra={"side": "server", "client": self.app.client_id,
                                             "code": code, "error": str(exc)})
            await websocket.close(code, str(exc)[:120])
            return False
        if (self.settings.bind_sessions_to_subject and self.subject is not None
                and claims.subject != self.subject):
            # A refresh is for the same subject: switching identity mid-connection
            # would hand the session to whoever's token came second.
            await websocket.close(envelope.NOT_YOUR_SESSION, "session not yours")
            return False
        self.subject, self.expires_s = claims.subject, claims.expires_s
        self.refreshed.set()
        return True

    async def enforce_expiry(self, websocket) -> None:
        while True:
            self.refreshed.clear()
            left = self.expires_s - self.app.now()
            if left <= 0:
                self.app.metrics.inc("wslab_auth_refused_total", side="server",
                                     code=envelope.UNAUTHORIZED)
                log.info("token expired: closing 4401",
                         extra={"side": "server", "client": self.app.client_id})
                await websocket.close(envelope.UNAUTHORIZED, "token expired")
                return
            try:
                await asyncio.wait_for(self.refreshed.wait(), left)
            except TimeoutError:
                pass


async def _trim_to_replay_window(app, session: Session, settings: Settings, fields: dict) -> int:
    """Refuse what a returning client can no longer get: the oldest of the
    messages produced for it beyond ``replay_window``. Returns how many."""
    if settings.replay_window is None:
        return 0
    excess = len(session.window.unacked) + app.backlog() - settings.replay_window
    missed = 0
    for _ in range(max(0, excess)):
        if (message := await app.next_message()) is None:
            break
        app.reject(message, "beyond the replay window")
        missed += 1
    if missed:
        app.metrics.inc("wslab_messages_missed_total", missed, side="server")
        log.info("beyond the replay window", extra={**fields, "missed": missed})
    return missed


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
        # A handshake not done by then is closed: half-open ones hold no slot.
        "open_timeout": settings.open_timeout_s,
        "max_size": settings.max_size_bytes,
        "max_queue": settings.max_queue_frames,
        "write_limit": settings.write_limit_bytes,
    }
