"""Event streaming over WebSocket, observable: structured logs and Prometheus metrics.

Questions an on-call engineer asks after an outage, and what answers each:

=====================================================  ==========================================
question                                               answer
=====================================================  ==========================================
which connection dropped, when, with which close code  ``disconnected`` (client, conn, code, reason)
how long was each client away                          its ``disconnected`` ... its next ``connected``
why did reconnecting take that long                    ``connect failed`` (attempt, error, retry_in_s)
which sequence numbers were sent again                 ``resending`` (seq: the first, resending: how many)
how many copies did the server drop, which ones        ``duplicate dropped`` (seq, expected);
                                                       ws_duplicates_dropped_total
is it happening now, and how often                     the counters' rates; ws_unacknowledged_events
=====================================================  ==========================================

Every log line is one event: a fixed message (easy to grep and to count) and its
context as fields (``extra=``), never formatted into the text. ``main()`` installs a
JSON formatter, one object per line; a module only gets its logger. No line per
event at INFO: at 100 events/s they would bury the lifecycle events.

Metrics: ``app.metrics`` stands for the process's registry (prometheus_client's
``Counter``/``Gauge`` in production); counters only go up, a gauge is a level.

(In the lab, ``app.connect()`` stands for ``websockets.connect(URI)``,
``app.outgoing()`` for the events the application produces, ``app.process()``
for the server's handling of one event and ``app.client_id`` for the client's id,
which a real server reads from the client's credentials.)
"""

import asyncio
import json
import logging
import random
from collections import OrderedDict

from websockets.exceptions import ConnectionClosed, InvalidHandshake

log = logging.getLogger(__name__)

RECONNECT_BASE_S = 0.05  # full jitter: uniform(0, min(CAP, BASE * 2**attempt))
RECONNECT_CAP_S = 1.0
CLOSE_TIMEOUT_S = 0.1  # don't wait 10 s for a close frame that will not come
SERVE_OPTIONS = {"close_timeout": CLOSE_TIMEOUT_S}

METRICS = {
    "ws_connections_opened_total": "connections opened (client side)",
    "ws_reconnects_total": "connections opened after the client's first",
    "ws_connect_failures_total": "connection attempts that failed",
    "ws_events_resent_total": "events sent again after a reconnection",
    "ws_unacknowledged_events": "events kept by the client until the server acknowledges them",
    "ws_connections_open": "connections the server is serving now",
    "ws_events_processed_total": "events processed by the server",
    "ws_duplicates_dropped_total": "copies of already processed events, dropped",
}


def describe_metrics(metrics):
    for name, help_text in METRICS.items():
        metrics.describe(name, help_text)


def _code(websocket):
    # A plain int in the logs (1006: no close frame, the network cut; 1012: restart).
    return None if websocket.close_code is None else int(websocket.close_code)


# ---------------------------------------------------------------- server

async def handler(websocket, app):
    """Process each event once, then acknowledge it (cumulative)."""
    describe_metrics(app.metrics)
    fields = {"side": "server", "client": app.client_id, "conn": str(websocket.id)[:8]}
    last_seq = app.store.setdefault("last_seq", {})  # survives restarts (your database)
    live = app.state.setdefault("live", set())
    live.add(websocket)
    app.metrics.set("ws_connections_open", len(live), side="server")
    log.info("client connected", extra={**fields, "expected": last_seq.get(app.client_id, -1) + 1})
    try:
        async for frame in websocket:
            message = json.loads(frame)
            seq = message["seq"]
            if seq <= last_seq.get(app.client_id, -1):
                app.metrics.inc("ws_duplicates_dropped_total", side="server")
                log.info("duplicate dropped", extra={
                    **fields, "seq": seq, "expected": last_seq[app.client_id] + 1})
            else:
                await app.process(message["event"])
                last_seq[app.client_id] = seq
                app.metrics.inc("ws_events_processed_total", side="server")
            await websocket.send(json.dumps({"ack": seq}))
    except ConnectionClosed:
        pass
    finally:
        live.discard(websocket)
        app.metrics.set("ws_connections_open", len(live), side="server")
        log.info("client disconnected", extra={**fields, "code": _code(websocket)})


# ---------------------------------------------------------------- client

async def client(app):
    """Stream the application's events; keep each until acknowledged; reconnect."""
    describe_metrics(app.metrics)
    fields = {"side": "client", "client": app.client_id}
    pending = OrderedDict()  # seq -> event, until the server acknowledges it
    added = asyncio.Event()
    sent = {"highest": -1}  # the highest seq ever sent: those below it are resends

    async def collect_events():
        next_seq = 0
        async for event in app.outgoing():
            pending[next_seq] = event
            next_seq += 1
            added.set()
            app.metrics.set("ws_unacknowledged_events", len(pending), side="client",
                            client=app.client_id)

    async def send_events(websocket):
        sent_upto = -1  # a new connection resends everything unacknowledged first
        while True:
            unsent = [(s, e) for s, e in pending.items() if s > sent_upto]
            if not unsent:
                added.clear()
                await added.wait()
            for seq, event in unsent:
                await websocket.send(json.dumps({"seq": seq, "event": event}))
                sent_upto = seq
                sent["highest"] = max(sent["highest"], seq)

    async def read_acks(websocket):
        async for frame in websocket:
            ack = json.loads(frame)["ack"]
            while pending and next(iter(pending)) <= ack:
                pending.popitem(last=False)

    collector = asyncio.create_task(collect_events())
    attempt = connections = 0
    try:
        while True:
            websocket = None
            try:
                async with app.connect(close_timeout=CLOSE_TIMEOUT_S) as websocket:
                    connections += 1
                    conn = {**fields, "conn": str(websocket.id)[:8]}
                    app.metrics.inc("ws_connections_opened_total", side="client")
                    if connections > 1:
                        app.metrics.inc("ws_reconnects_total", side="client")
                    log.info("connected", extra={**conn, "attempt": attempt,
                                                 "unacknowledged": len(pending)})
                    resending = [seq for seq in pending if seq <= sent["highest"]]
                    if resending:
                        app.metrics.inc("ws_events_resent_total", len(resending), side="client")
                        log.info("resending", extra={**conn, "seq": resending[0],
                                                     "resending": len(resending)})
                    attempt = 0
                    sender = asyncio.create_task(send_events(websocket))
                    reader = asyncio.create_task(read_acks(websocket))
                    try:
                        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
                    finally:  # one ended (the connection closed), or we are cancelled
                        sender.cancel()
                        reader.cancel()
                        await asyncio.gather(sender, reader, return_exceptions=True)
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
                if websocket is None:  # the attempt itself failed
                    app.metrics.inc("ws_connect_failures_total", side="client")
                    log.info("connect failed", extra={**fields, "attempt": attempt,
                                                      "error": type(exc).__name__})
            delay = random.uniform(0, min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2 ** attempt))
            if websocket is not None:
                log.info("disconnected", extra={
                    **conn, "code": _code(websocket), "reason": websocket.close_reason,
                    "unacknowledged": len(pending), "retry_in_s": round(delay, 3)})
            attempt += 1
            await asyncio.sleep(delay)
    finally:
        collector.cancel()


# ---------------------------------------------------------------- running it

class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, event and every extra field."""

    STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record):
        fields = {k: v for k, v in vars(record).items() if k not in self.STANDARD}
        return json.dumps({"time": record.created, "level": record.levelname.lower(),
                           "logger": record.name, "event": record.getMessage(), **fields},
                          default=str)


def main():
    """Configure logging once, at startup; then serve() and connect as usual."""
    stream = logging.StreamHandler()
    stream.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[stream])


if __name__ == "__main__":
    main()
