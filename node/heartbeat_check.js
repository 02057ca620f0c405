'use strict';
// Lesson 14's exercise: a ws server running the learner's heartbeat, watched by
// wslab/exercises/nodejs.py. Usage: node heartbeat_check.js HEARTBEAT_FILE
// The file exports heartbeat(wss): it keeps the server's connections checked.
// stdout, one JSON line each: listening (the port), open and closed (a connection,
// by its path). A line "stop" on stdin (or its end) ends every connection and
// closes the server; the process then exits on its own unless a timer still runs.
const { WebSocketServer } = require('ws');

const out = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const heartbeat = require(process.argv[2]);
if (typeof heartbeat !== 'function') {
  console.error(`${process.argv[2]} must export a function heartbeat(wss), got ${typeof heartbeat}`);
  process.exit(2);
}

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
wss.on('listening', () => out({ event: 'listening', port: wss.address().port }));
wss.on('connection', (ws, req) => {
  const name = req.url.slice(1);
  out({ event: 'open', name });
  ws.on('close', (code) => out({ event: 'closed', name, code }));
});
heartbeat(wss);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.terminate();
  wss.close();
  process.stdin.destroy();
}
process.stdin.setEncoding('utf8');
process.stdin.on('data', (text) => { if (text.includes('stop')) stop(); });
process.stdin.on('end', stop);
