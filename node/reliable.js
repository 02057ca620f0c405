'use strict';
// What the production server and client share: the frames and the go-back-N window of
// wslab's Python production design (wslab/production/envelope.py and reliable.py), so
// that a Node side and a Python side talk to each other.
//
// Frames are JSON text, one object each:
//   {"t": "hello", "session": ID, "down_next": N}   client -> server, first
//   {"t": "welcome", "up_next": N, "missed": 0}      server -> client, the answer
//   {"t": "msg", "seq": N, "body": M}  or  {"t": "msg", "seq": N, "bodies": [M, ...]}
//   {"t": "ack", "seq": N}  (cumulative: everything up to N; "resend": true: I saw a gap)
//   {"t": "error", "code": C, "detail": D}          server -> client, a bad frame

const CAPACITY = 128; // messages kept until acknowledged (more: the producer waits)
const WINDOW = 32; // of which at most this many on the wire: the receiver's credit
const BATCH_MAX = 16; // messages ready together travel in one frame
const ACK_EVERY = 4; // a cumulative ack stands for up to this many messages
const ACK_TIMEOUT_MS = 400; // nothing acknowledged for this long: go back and resend
const MAX_SIZE = 1 << 20; // the largest frame either side accepts (maxPayload)
const WRITE_LIMIT = 64 * 1024; // bytes buffered by ws (bufferedAmount) before we wait
const IN_HAND = 8; // messages handed to the application at once (it takes them in turn)

class BadFrame extends Error {
  constructor(code, detail) {
    super(`${code}: ${detail}`);
    this.code = code;
    this.detail = detail;
  }
}

const isSeq = (n) => Number.isSafeInteger(n) && n >= 0;

// Parse and check one frame; a BadFrame for anything that does not fit.
function decode(data, isBinary) {
  if (isBinary) throw new BadFrame('binary_not_supported', 'send JSON as text frames');
  let frame;
  try {
    frame = JSON.parse(data.toString());
  } catch {
    throw new BadFrame('bad_json', 'not JSON');
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    throw new BadFrame('bad_json', 'a frame is a JSON object');
  }
  const ok = {
    hello: () => typeof frame.session === 'string' && isSeq(frame.down_next),
    welcome: () => isSeq(frame.up_next),
    msg: () => isSeq(frame.seq) && (typeof frame.body === 'string' || (Array.isArray(frame.bodies)
      && frame.bodies.length > 0 && frame.bodies.every((b) => typeof b === 'string'))),
    ack: () => isSeq(frame.seq),
    auth: () => typeof frame.token === 'string',
    error: () => true,
  }[frame.t];
  if (!ok) throw new BadFrame('unknown_type', `unknown frame type ${JSON.stringify(frame.t)}`);
  if (!ok()) throw new BadFrame('bad_field', `a ${frame.t} frame with a missing or wrong field`);
  return frame;
}

const encode = (frame) => JSON.stringify(frame);

// Messages kept until acknowledged, numbered 0, 1, 2...; at most WINDOW of them sent
// and not yet acknowledged. rewind() goes back to resend them all, in order.
class OutboundWindow {
  constructor() {
    this.unacked = []; // [seq, body], oldest first
    this.nextSeq = 0;
    this.sendIndex = 0; // index in unacked of the next message to (re)send
    this.highestSent = -1;
  }

  get inFlight() { return this.sendIndex; }

  add(body) {
    this.unacked.push([this.nextSeq++, body]);
  }

  // Everything up to `upto` arrived: forget it. Returns how many.
  acknowledge(upto) {
    upto = Math.min(upto, this.highestSent);
    let removed = 0;
    while (this.unacked.length && this.unacked[0][0] <= upto) {
      this.unacked.shift();
      removed += 1;
    }
    this.sendIndex = Math.max(0, this.sendIndex - removed);
    return removed;
  }

  // The next frame to send, {t: 'msg', ...}, or null when the window allows none.
  nextFrame() {
    const first = this.sendIndex;
    const bodies = [];
    let size = 64;
    while (bodies.length < BATCH_MAX && this.sendIndex < this.unacked.length
           && this.sendIndex < WINDOW) {
      const [seq, body] = this.unacked[this.sendIndex];
      size += Buffer.byteLength(JSON.stringify(body)) + 2;
      if (bodies.length && size > MAX_SIZE) break;
      bodies.push(body);
      this.highestSent = Math.max(this.highestSent, seq);
      this.sendIndex += 1;
    }
    if (!bodies.length) return null;
    const seq = this.unacked[first][0];
    return bodies.length === 1 ? { t: 'msg', seq, body: bodies[0] } : { t: 'msg', seq, bodies };
  }

  rewind() {
    const resent = this.sendIndex;
    this.sendIndex = 0;
    return resent;
  }

  clear() {
    const bodies = this.unacked.map(([, body]) => body);
    this.unacked = [];
    this.sendIndex = 0;
    return bodies;
  }
}

// The receiving side. Hand the messages received (s.inbox: [seq, body]) to the
// application in order, each once: the next expected number is handed over, a copy of
// one already handed over is dropped, a gap is dropped and asks the sender to go back
// (resendDue). Up to IN_HAND messages are with the application at once, which takes
// them in turn: a round trip to it per message would slow a fast consumer down.
// `s` holds next (the next number to process), inbox, inHand, acksDue, resendDue and
// working; processed(reply) is called after each one, in order, once s.next counts
// it; pump() sends what is due. While stopping() new messages wait in the inbox, but
// those handed over are seen through.
async function deliverInOrder(s, { handOver, processed, pump, stopping = () => false }) {
  if (s.working) return;
  s.working = true;
  try {
    while ((s.inbox.length && !stopping()) || s.inHand.length) {
      while (s.inbox.length && !stopping() && s.inHand.length < IN_HAND) {
        const [seq, body] = s.inbox.shift();
        const expected = s.next + s.inHand.length;
        if (seq === expected) {
          s.inHand.push(handOver(body));
        } else {
          s.resendDue = s.resendDue || seq > expected;
          s.acksDue += 1; // acknowledged again all the same
        }
      }
      if (s.inHand.length) {
        const reply = await s.inHand[0];
        s.inHand.shift();
        s.next += 1;
        processed(reply);
        s.acksDue += 1;
      }
      pump();
    }
  } finally {
    s.working = false;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = {
  ACK_EVERY, ACK_TIMEOUT_MS, BATCH_MAX, BadFrame, CAPACITY, MAX_SIZE, OutboundWindow, WINDOW,
  WRITE_LIMIT, decode, deliverInOrder, encode, sleep,
};
