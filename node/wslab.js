'use strict';
// The lab's side of a design process: wslab's line protocol on stdin and stdout,
// one JSON object per line (the protocol: `help(wslab.external)`, or the README).
// A design uses these functions where a Python design uses its `app`:
//   client: pull(n), onSend(fn), deliver(msg), reject(msg, reason), opened(), closed(), onStop(fn)
//   server: opened(client), pull(n, client), onPush(fn), process(msg), reject(msg, reason)
// Logs go to stderr (console.error): stdout belongs to the protocol.

const readline = require('node:readline');

const env = process.env;
const answers = new Map(); // ref -> resolve(reply), for deliver() and process()
let nextRef = 0;
let sendHandler = null;
let pushHandler = null;
let stopHandler = null;

function write(line) {
  // On Linux a write to a pipe is synchronous: a line is out before the process exits.
  process.stdout.write(JSON.stringify(line) + '\n');
}

function ask(op, msg) {
  const ref = nextRef++;
  write({ op, ref, msg });
  return new Promise((resolve) => answers.set(ref, resolve));
}

readline.createInterface({ input: process.stdin, crlfDelay: Infinity }).on('line', (text) => {
  const line = JSON.parse(text);
  if (line.op === 'done') {
    const resolve = answers.get(line.ref);
    answers.delete(line.ref);
    if (resolve) resolve(line.reply ?? null);
  } else if (line.op === 'send') {
    if (sendHandler) sendHandler(line.msg);
  } else if (line.op === 'push') {
    if (pushHandler) pushHandler(line.msg, line.client);
  } else if (line.op === 'stop') {
    if (stopHandler) stopHandler();
  }
});

module.exports = {
  url: env.WSLAB_URL, // a client connects here (through the lab's proxy)
  host: env.WSLAB_HOST || '127.0.0.1', // a server listens here...
  port: Number(env.WSLAB_PORT), // ...on this port
  store: env.WSLAB_STORE, // a directory of this process's own (a server's survives restarts)
  clientId: Number(env.WSLAB_CLIENT),

  // Ready for n more messages (for a server: for that client); no n: all of them.
  pull(n, client) {
    const line = client === undefined ? { op: 'pull' } : { op: 'pull', client };
    if (n !== undefined && n !== Infinity) line.n = n;
    write(line);
  },
  onSend(fn) { sendHandler = fn; }, // fn(msg): the application wants msg sent
  onPush(fn) { pushHandler = fn; }, // fn(msg, client): push msg to that client
  onStop(fn) { stopHandler = fn; }, // the run is over: finish and exit
  // The application processes a message received: resolved once it has (a server
  // gets the reply to send back, or null).
  deliver(msg) { return ask('deliver', msg); },
  process(msg) { return ask('process', msg); },
  reject(msg, reason) { write({ op: 'reject', msg, reason }); },
  // A connection opened / closed (a server names the client: the path /c/<id>).
  opened(client) { write(client === undefined ? { op: 'open' } : { op: 'open', client }); },
  closed() { write({ op: 'close' }); },
  clientOf(url) {
    const match = /^\/c\/(\d+)/.exec(url || '');
    return match ? Number(match[1]) : null;
  },
};
