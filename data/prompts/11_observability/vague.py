"""Event streaming over WebSocket, with debug output added.

I added print statements at the important points so you can follow what the
client and the server are doing in the console:

- the server prints every event it receives and every duplicate it skips;
- the client prints when it connects, when it loses the connection (with the
  error), when it resends events and when it reconnects.

Run the server and a few clients in separate terminals and watch the output.

(In the lab, ``app.connect()`` stands for ``websockets.connect(URI)``,
``app.outgoing()`` for the events the application produces and
``app.process()`` for the server's handling of one event.)
"""

import asyncio
import json
from collections import OrderedDict

from websockets.exceptions import ConnectionClosed, InvalidHandshake

RECONNECT_DELAY = 0.1  # seconds


# ---------------------------------------------------------------- server

async def handler(websocket, app):
    print("New client connected")
    last_seq = app.store.setdefault("last_seq", {})  # survives restarts (your database)
    try:
        async for frame in websocket:
            message = json.loads(frame)
            seq = message["seq"]
            print(f"Received event {seq}")
            if seq <= last_seq.get(app.client_id, -1):
                print(f"Duplicate event {seq}, skipping")
            else:
                await app.process(message["event"])
                last_seq[app.client_id] = seq
            await websocket.send(json.dumps({"ack": seq}))
    except ConnectionClosed:
        pass
    print("Client disconnected")


# ---------------------------------------------------------------- client

async def client(app):
    pending = OrderedDict()  # seq -> event, until the server acknowledges it
    added = asyncio.Event()

    async def collect_events():
        next_seq = 0
        async for event in app.outgoing():
            pending[next_seq] = event
            next_seq += 1
            added.set()

    async def send_events(websocket):
        sent_upto = -1
        while True:
            unsent = [(s, e) for s, e in pending.items() if s > sent_upto]
            if not unsent:
                added.clear()
                await added.wait()
            for seq, event in unsent:
                await websocket.send(json.dumps({"seq": seq, "event": event}))
                sent_upto = seq

    async def read_acks(websocket):
        async for frame in websocket:
            ack = json.loads(frame)["ack"]
            while pending and next(iter(pending)) <= ack:
                pending.popitem(last=False)

    collector = asyncio.create_task(collect_events())
    try:
        while True:
            try:
                async with app.connect() as websocket:
                    print("Connected to server")
                    if pending:
                        print(f"Resending {len(pending)} events")
                    sender = asyncio.create_task(send_events(websocket))
                    reader = asyncio.create_task(read_acks(websocket))
                    try:
                        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
                    finally:  # one ended (the connection closed), or we are cancelled
                        sender.cancel()
                        reader.cancel()
                        await asyncio.gather(sender, reader, return_exceptions=True)
                    print("Connection lost")
            except (ConnectionClosed, InvalidHandshake, OSError) as e:
                print(f"Connection error: {e}")
            print(f"Reconnecting in {RECONNECT_DELAY} seconds...")
            await asyncio.sleep(RECONNECT_DELAY)
    finally:
        collector.cancel()
