"""A WebSocket link that survives the failures listed first (see better.md).

Failure → what this code does:

- connection dropped, server restarted → the client reconnects with full-jitter
  exponential backoff; every message is numbered and kept until the peer
  acknowledges it after processing, then resent from the oldest;
- an acknowledgement lost → no progress for ACK_TIMEOUT while messages wait:
  send them again (the receiver acknowledges the copies);
- a message sent twice (a lost acknowledgement, a resend) → the receiver
  processes only the next number it expects: duplicates are acknowledged and
  skipped; the counters live in the server's store, so they survive a restart;
- a slow reader → at most WINDOW messages unacknowledged per direction; the
  producer waits for room (memory bounded);
- a silently dead connection → ping every 0.25 s, dead after 0.5 s without a pong,
  and no waiting for a close handshake the peer will never answer;
- a token that expires → a fresh token at every (re)connection; a revoked one
  (close 4403) stops the client instead of retrying forever.
"""

import asyncio
import json
import logging
import random
import uuid

from websockets.exceptions import ConnectionClosed, InvalidHandshake

log = logging.getLogger(__name__)

WINDOW = 32  # unacknowledged messages per direction
KEEPALIVE = {"ping_interval": 0.25, "ping_timeout": 0.5, "close_timeout": 0.1}
SERVE_OPTIONS = KEEPALIVE
BACKOFF_BASE, BACKOFF_CAP = 0.05, 2.0  # seconds
ACK_TIMEOUT = 0.5  # seconds without an acknowledgement before resending


class Link:
    """One direction: numbered messages kept until acknowledged, at most WINDOW of them."""

    def __init__(self):
        self.unacked = {}  # seq -> body
        self.next_seq = 0
        self.room = asyncio.Semaphore(WINDOW)
        self.last_progress = 0.0  # loop time of the last acknowledgement

    def add(self, body):
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        self.unacked[seq] = body
        return seq

    def acknowledge(self, upto):
        self.last_progress = asyncio.get_running_loop().time()
        for seq in [s for s in self.unacked if s <= upto]:
            del self.unacked[seq]
            self.room.release()


async def pump(websocket, link, app):
    """Resend what is unacknowledged, then send new messages while there is room."""
    for seq, body in sorted(link.unacked.items()):
        await websocket.send(json.dumps({"seq": seq, "body": body}))
    while True:
        await link.room.acquire()  # room first: a message is taken only when it fits
        body = await app.next_message()
        if body is None:  # nothing more to send; keep reading acknowledgements
            link.room.release()
            await asyncio.Future()
        seq = link.add(body)
        await websocket.send(json.dumps({"seq": seq, "body": body}))


async def resend_when_stalled(websocket, link):
    """Acknowledgements can be lost too: when none came for ACK_TIMEOUT, resend."""
    loop = asyncio.get_running_loop()
    link.last_progress = loop.time()
    while True:
        await asyncio.sleep(ACK_TIMEOUT / 2)
        if link.unacked and loop.time() - link.last_progress > ACK_TIMEOUT:
            link.last_progress = loop.time()
            for seq, body in sorted(link.unacked.items()):
                await websocket.send(json.dumps({"seq": seq, "body": body}))


async def receive(websocket, link, state, deliver):
    """Deliver each number once, in order; acknowledge cumulatively."""
    async for raw in websocket:
        frame = json.loads(raw)
        if "ack" in frame:
            link.acknowledge(frame["ack"])
        elif "reply" in frame:
            await deliver(frame["reply"])
        else:
            if frame["seq"] == state["delivered"] + 1:
                await deliver(frame["body"])
                state["delivered"] = frame["seq"]
            await websocket.send(json.dumps({"ack": state["delivered"]}))


async def run_until_first_ends(*coroutines):
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# Server ----------------------------------------------------------------------------

async def handler(websocket, app):
    hello = json.loads(await websocket.recv())
    try:
        app.verify_token(hello["token"])
    except Exception as exc:  # expired, revoked or forged
        await websocket.close(getattr(exc, "close_code", 4401), str(exc))
        return
    # Per session, in the store (a database in production): survives restarts.
    session = app.store.setdefault(hello["session"], {"in": {"delivered": -1}, "out": Link()})
    await websocket.send(json.dumps({"welcome": True}))

    async def process(body):
        reply = await app.process(body)
        if reply is not None:  # best effort: a reply lost with the connection is asked again
            await websocket.send(json.dumps({"reply": reply}))

    await run_until_first_ends(receive(websocket, session["out"], session["in"], process),
                               pump(websocket, session["out"], app),
                               resend_when_stalled(websocket, session["out"]))


# Client ----------------------------------------------------------------------------

async def client(app):
    session, link, inbound = uuid.uuid4().hex, Link(), {"delivered": -1}
    attempt = 0
    while True:
        try:
            token = await app.fetch_token()
            async with app.connect(**KEEPALIVE) as websocket:
                await websocket.send(json.dumps({"session": session, "token": token}))
                json.loads(await websocket.recv())  # the welcome
                attempt = 0
                await run_until_first_ends(receive(websocket, link, inbound, app.deliver),
                                           pump(websocket, link, app),
                                           resend_when_stalled(websocket, link))
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 4403:
                log.error("access revoked; not reconnecting")
                return
            log.warning("connection lost: %s", exc)
        except (InvalidHandshake, OSError) as exc:
            log.warning("cannot connect: %s", exc)
        except Exception as exc:  # the identity provider refused: revoked
            log.error("no token: %s", exc)
            return
        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
        attempt += 1
        await asyncio.sleep(delay)
