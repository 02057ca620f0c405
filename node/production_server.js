'use strict';
// The production server, in Node with ws: what wslab's Python production server does,
// in the same frames (reliable.js), so either side can talk to the other.
//
// - Sessions: a client says hello with its session id; a reconnection resumes it (an
//   older connection of the session is closed 4001), and the welcome tells the client
//   which message the server expects next, so it resends only what is missing.
// - Exactly once: each session's next expected number is written to WSLAB_STORE after
//   every message processed, so a restarted server neither loses nor reprocesses.
// - Acknowledged after processing, cumulatively; messages pushed to a client are kept
//   until it acknowledges them, resent after ACK_TIMEOUT_MS or a reconnection.
// - Backpressure: at most WINDOW messages in flight, CAPACITY kept, pulled from the
//   application only when there is room; nothing written while ws.bufferedAmount is high.
// - Heartbeat: ping every connection each HEARTBEAT_MS; one that did not answer the
//   previous ping is terminated (ws' isAlive idiom).
// - SIGTERM: stop taking connections and messages, finish the message in hand,
//   acknowledge, close every connection 1001 (going away), exit.
// Tokens (the Python production server's lesson 09) are not checked here.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { WebSocketServer, WebSocket } = require('ws');
const lab = require('./wslab');
const {
  ACK_EVERY, ACK_TIMEOUT_MS, BadFrame, CAPACITY, MAX_SIZE, OutboundWindow, WINDOW, WRITE_LIMIT,
  decode, deliverInOrder, encode, sleep,
} = require('./reliable');

const HEARTBEAT_MS = 1000; // well above a slow round trip (the latency spike: 0.36 s)
const HELLO_TIMEOUT_MS = 2000;
const MAX_BAD_FRAMES = 32;
const MAX_SESSION_ID = 128;

// Durable: the next message number each session expects, one small file per session.
function storeFile(id) {
  const name = crypto.createHash('sha256').update(id).digest('hex').slice(0, 32);
  return path.join(lab.store, `session-${name}.json`);
}
function loadNext(id) {
  try {
    return JSON.parse(fs.readFileSync(storeFile(id), 'utf8')).next;
  } catch {
    return 0; // a new session
  }
}
function saveNext(id, next) {
  const file = storeFile(id);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify({ next }));
  fs.renameSync(`${file}.tmp`, file); // atomic: a kill never leaves half a file
}

class Session {
  constructor(id) {
    this.id = id;
    this.next = loadNext(id); // the next client message number to process
    this.window = new OutboundWindow(); // messages to this client, until acknowledged
    this.inbox = []; // [seq, body] received, not handed to the application yet
    this.inHand = []; // the application's promises for the messages it holds, in order
    this.working = false;
    this.ws = null; // the connection serving it now
    this.client = null; // the lab client (the path /c/<id>), for pushes
    this.requested = 0; // pushes pulled from the application, not arrived yet
    this.acksDue = 0;
    this.resendDue = false;
    this.lastProgress = Date.now();
    this.rewoundFor = -1;
    this.pumpLater = null;
  }
}

const sessions = new Map(); // id -> Session: in memory (a restart loses all but the store)
const byClient = new Map(); // lab client -> its Session
let stopping = false;

const wss = new WebSocketServer({ host: lab.host, port: lab.port, maxPayload: MAX_SIZE });

wss.on('connection', (ws, req) => {
  const client = lab.clientOf(req.url);
  lab.opened(client);
  ws.isAlive = true;
  ws.on('pong', () => { ws.isAlive = true; });
  ws.on('error', () => {}); // a reset or a bad frame: 'close' follows
  let session = null;
  let badFrames = 0;
  const helloTimer = setTimeout(() => ws.close(1008, 'no hello'), HELLO_TIMEOUT_MS);

  ws.on('message', (data, isBinary) => {
    let frame;
    try {
      frame = decode(data, isBinary);
    } catch (error) {
      if (!(error instanceof BadFrame)) throw error;
      badFrames += 1;
      if (badFrames > MAX_BAD_FRAMES) return ws.close(1008, 'too many bad frames');
      if (session) ws.send(encode({ t: 'error', code: error.code, detail: error.detail }));
      else ws.close(1008, error.message.slice(0, 120));
      return undefined;
    }
    if (session === null) {
      clearTimeout(helloTimer);
      if (frame.t !== 'hello' || frame.session.length > MAX_SESSION_ID || stopping) {
        return ws.close(1008, 'the first frame must be a hello');
      }
      session = attach(frame, ws, client);
    } else if (frame.t === 'msg') {
      receive(session, ws, frame);
    } else if (frame.t === 'ack') {
      acknowledged(session, frame);
    } // "auth" (a token refresh) and the rest: nothing to do here
    return undefined;
  });

  ws.on('close', () => {
    clearTimeout(helloTimer);
    if (session && session.ws === ws) session.ws = null;
  });
});

function attach(hello, ws, client) {
  let s = sessions.get(hello.session);
  if (!s) {
    s = new Session(hello.session);
    sessions.set(s.id, s);
  }
  if (s.ws && s.ws !== ws) s.ws.close(4001, 'superseded');
  s.ws = ws;
  if (client !== null) {
    s.client = client;
    byClient.set(client, s);
  }
  s.window.acknowledge(hello.down_next - 1);
  ws.send(encode({ t: 'welcome', up_next: s.next, missed: 0 }));
  s.window.rewind(); // a new connection resends everything not acknowledged
  s.lastProgress = Date.now();
  pullPushes(s);
  pump(s);
  return s;
}

function receive(s, ws, frame) {
  const bodies = frame.bodies || [frame.body];
  if (s.inbox.length + bodies.length > 2 * WINDOW) {
    ws.close(1008, 'flow control violated'); // more than the window allows
    return;
  }
  bodies.forEach((body, i) => s.inbox.push([frame.seq + i, body]));
  work(s);
}

// The application: each message processed once, in order; its number stored at once.
function work(s) {
  return deliverInOrder(s, {
    handOver: (body) => lab.process(body),
    processed: (reply) => {
      saveNext(s.id, s.next);
      if (reply !== null) s.window.add(reply); // the client's credit bounds these
    },
    pump: () => pump(s),
    stopping: () => stopping,
  });
}

function acknowledged(s, frame) {
  if (s.window.acknowledge(frame.seq)) {
    s.lastProgress = Date.now();
    pullPushes(s);
  }
  if (frame.resend && s.window.inFlight && s.window.unacked[0][0] !== s.rewoundFor) {
    s.rewoundFor = s.window.unacked[0][0]; // go back once per gap
    s.window.rewind();
    s.lastProgress = Date.now();
  }
  pump(s);
}

// The writer: acknowledgements first, then messages within the window, while ws'
// own buffer has room.
function pump(s) {
  const ws = s.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const batchDone = s.acksDue >= ACK_EVERY || !s.inbox.length || s.resendDue;
  if (s.acksDue && batchDone && s.next > 0) {
    ws.send(encode(s.resendDue ? { t: 'ack', seq: s.next - 1, resend: true }
      : { t: 'ack', seq: s.next - 1 }));
    s.acksDue = 0;
    s.resendDue = false;
  }
  while (ws.bufferedAmount < WRITE_LIMIT) {
    const frame = s.window.nextFrame();
    if (!frame) return;
    ws.send(encode(frame));
  }
  // ws' buffer is full: write the rest once it drained a little.
  if (!s.pumpLater) s.pumpLater = setTimeout(() => { s.pumpLater = null; pump(s); }, 5);
}

// Pushes for the session's client: pull from the application only what fits.
function pullPushes(s) {
  if (s.client === null || stopping) return;
  const room = CAPACITY - s.window.unacked.length - s.requested;
  if (room >= 16 || (room > 0 && s.requested === 0)) {
    lab.pull(room, s.client);
    s.requested += room;
  }
}

lab.onPush((message, client) => {
  const s = byClient.get(client);
  if (!s) return lab.reject(message, 'no session for this client');
  s.requested -= 1;
  s.window.add(message);
  pump(s);
  return undefined;
});

// Nothing acknowledged for ACK_TIMEOUT_MS while messages are in flight: go back.
const ackTimer = setInterval(() => {
  for (const s of sessions.values()) {
    if (s.window.inFlight && Date.now() - s.lastProgress > ACK_TIMEOUT_MS) {
      s.window.rewind();
      s.lastProgress = Date.now();
      pump(s);
    }
  }
}, 50);

const heartbeat = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.isAlive) {
      ws.terminate(); // no pong since the last ping: a dead peer
    } else {
      ws.isAlive = false;
      ws.ping();
    }
  }
}, HEARTBEAT_MS);

process.on('SIGTERM', async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(heartbeat);
  clearInterval(ackTimer);
  wss.close(); // no new connection (ws 8 leaves the open ones to us)
  // The messages the application holds: processed, and their numbers stored.
  const deadline = Date.now() + 300;
  while ([...sessions.values()].some((s) => s.inHand.length) && Date.now() < deadline) {
    await sleep(5);
  }
  for (const s of sessions.values()) {
    if (s.ws && s.ws.readyState === WebSocket.OPEN && s.next > 0) {
      s.ws.send(encode({ t: 'ack', seq: s.next - 1 }));
    }
  }
  for (const ws of wss.clients) ws.close(1001, 'going away');
  await sleep(100); // the close frames go out
  process.exit(0);
});
