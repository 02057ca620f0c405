'use strict';
// The production client, in Node with ws: what wslab's Python production client does,
// in the same frames (reliable.js).
//
// - Every message is kept until the server acknowledges it (after processing), resent
//   after a reconnection or ACK_TIMEOUT_MS without progress; the server de-duplicates
//   by sequence number.
// - Backpressure: it pulls from the application only while fewer than CAPACITY
//   messages are kept; at most WINDOW of them on the wire; nothing written while
//   ws.bufferedAmount is high.
// - Reconnection with exponential backoff and full jitter; the backoff starts again
//   after a connection that held STABLE_MS.
// - Heartbeat: a ping every PING_EVERY_MS; no pong for DEAD_AFTER_MS means a dead peer
//   (a black hole no socket reports): terminate() and reconnect.
// - Stop (the lab's stop, or SIGTERM): wait a little for acknowledgements, report every
//   message still unacknowledged (rejected, not lost), close 1000, exit.

const crypto = require('node:crypto');
const WebSocket = require('ws');
const lab = require('./wslab');
const {
  ACK_EVERY, ACK_TIMEOUT_MS, CAPACITY, MAX_SIZE, OutboundWindow, WRITE_LIMIT, decode,
  deliverInOrder, encode, sleep,
} = require('./reliable');

const BACKOFF_BASE_MS = 50;
const BACKOFF_CAP_MS = 1000;
const STABLE_MS = 1000;
const PING_EVERY_MS = 250;
const DEAD_AFTER_MS = 1000; // > a ping interval plus a slow round trip (0.36 s)
const HANDSHAKE_TIMEOUT_MS = 1500; // a handshake met by silence ends, and we retry
const STOP_WAIT_MS = 400;

const session = crypto.randomBytes(16).toString('hex'); // unguessable, kept across reconnections
const outbound = new OutboundWindow(); // our messages, until acknowledged
// The server's messages: the next number to deliver, those received and not delivered
// yet, those the application holds; acknowledgements due.
const inbound = { next: 0, inbox: [], inHand: [], working: false, acksDue: 0, resendDue: false };
let requested = 0; // messages pulled from the application, not arrived yet
let lastProgress = Date.now();
let rewoundFor = -1;
let attempt = 0;
let ws = null; // the connection, once welcomed
let lastPong = 0;
let pumpLater = null;
let stopping = false;

// The application's messages: pull only what there is room to keep.
function pullMore() {
  if (stopping) return;
  const room = CAPACITY - outbound.unacked.length - requested;
  if (room >= 16 || (room > 0 && requested === 0)) {
    lab.pull(room);
    requested += room;
  }
}

lab.onSend((message) => {
  requested -= 1;
  outbound.add(message);
  pump();
});

function connect() {
  if (stopping) return;
  const socket = new WebSocket(lab.url, {
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS, maxPayload: MAX_SIZE, perMessageDeflate: false,
  });
  let openedAt = null;
  let welcomed = false;
  const welcomeTimer = setTimeout(() => socket.terminate(), 2 * HANDSHAKE_TIMEOUT_MS);

  socket.on('open', () => {
    openedAt = Date.now();
    lastPong = openedAt;
    lab.opened();
    socket.send(encode({ t: 'hello', session, down_next: inbound.next }));
  });
  socket.on('pong', () => { lastPong = Date.now(); });
  socket.on('error', () => {}); // refused, reset, timed out: 'close' follows
  socket.on('message', (data, isBinary) => {
    let frame;
    try {
      frame = decode(data, isBinary);
    } catch {
      return; // not ours to understand: ignore it
    }
    if (!welcomed) {
      if (frame.t !== 'welcome') return socket.close(1008, 'expected a welcome');
      welcomed = true;
      clearTimeout(welcomeTimer);
      ws = socket;
      outbound.acknowledge(frame.up_next - 1); // the server has these already
      outbound.rewind(); // resend the rest
      lastProgress = Date.now();
      pullMore();
      pump();
    } else if (frame.t === 'ack') {
      acknowledged(frame);
    } else if (frame.t === 'msg') {
      const bodies = frame.bodies || [frame.body];
      bodies.forEach((body, i) => inbound.inbox.push([frame.seq + i, body]));
      work();
    }
    return undefined;
  });
  socket.on('close', () => {
    clearTimeout(welcomeTimer);
    if (ws === socket) ws = null;
    if (openedAt !== null) {
      lab.closed();
      if (Date.now() - openedAt >= STABLE_MS) attempt = 0; // it held: start again from short delays
    }
    if (stopping) return;
    // Full jitter: anywhere between 0 and the exponential ceiling.
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    attempt += 1;
    setTimeout(connect, Math.random() * ceiling);
  });
}

function acknowledged(frame) {
  if (outbound.acknowledge(frame.seq)) {
    lastProgress = Date.now();
    pullMore();
  }
  if (frame.resend && outbound.inFlight && outbound.unacked[0][0] !== rewoundFor) {
    rewoundFor = outbound.unacked[0][0]; // go back once per gap
    outbound.rewind();
    lastProgress = Date.now();
  }
  pump();
}

// The server's pushes, delivered once each, in order, acknowledged after delivery: the
// application's pace is ours (backpressure).
function work() {
  return deliverInOrder(inbound, {
    handOver: (body) => lab.deliver(body),
    processed: () => {},
    pump,
  });
}

// The writer: acknowledgements, then messages within the window, while ws' buffer has room.
function pump() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const { acksDue, inbox, next, resendDue } = inbound;
  if (acksDue && (acksDue >= ACK_EVERY || !inbox.length || resendDue) && next > 0) {
    const ack = { t: 'ack', seq: next - 1 };
    ws.send(encode(resendDue ? { ...ack, resend: true } : ack));
    inbound.acksDue = 0;
    inbound.resendDue = false;
  }
  while (ws.bufferedAmount < WRITE_LIMIT) {
    const frame = outbound.nextFrame();
    if (!frame) return;
    ws.send(encode(frame));
  }
  if (!pumpLater) pumpLater = setTimeout(() => { pumpLater = null; pump(); }, 5);
}

setInterval(() => {
  if (outbound.inFlight && Date.now() - lastProgress > ACK_TIMEOUT_MS) {
    outbound.rewind(); // nothing acknowledged for a while: something was lost, go back
    lastProgress = Date.now();
    pump();
  }
}, 50);

setInterval(() => {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  if (Date.now() - lastPong > DEAD_AFTER_MS) {
    ws.terminate(); // no pong: the peer (or the path to it) is gone
  } else {
    ws.ping();
  }
}, PING_EVERY_MS);

async function stop() {
  if (stopping) return;
  stopping = true;
  const deadline = Date.now() + STOP_WAIT_MS;
  while (outbound.unacked.length && Date.now() < deadline) await sleep(20);
  const undelivered = outbound.clear();
  for (const body of undelivered) lab.reject(body, 'not acknowledged before the client stopped');
  if (ws) ws.close(1000, 'client stopping');
  await sleep(100); // the close frame goes out
  process.exit(0);
}

lab.onStop(stop);
process.on('SIGTERM', stop);

pullMore();
connect();
