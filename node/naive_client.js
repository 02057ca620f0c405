'use strict';
// The client a vague prompt gets: connect once, send every message, handle what
// arrives. No reconnection, no acknowledgements, no keepalive, sends never wait.
const WebSocket = require('ws');
const lab = require('./wslab');

const ws = new WebSocket(lab.url);

ws.on('open', () => {
  lab.opened();
  lab.onSend((message) => ws.send(message));
  lab.pull(); // every message, as it is produced
});

ws.on('message', (data) => {
  lab.deliver(data.toString());
});

ws.on('close', () => {
  lab.closed();
});
