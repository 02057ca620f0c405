'use strict';
// The server a vague prompt gets ("a Node.js WebSocket server with ws"): reply to
// each message, push updates as they come. Correct on the happy path. No
// heartbeat, no acknowledgements, no backpressure, nothing kept across a restart.
const { WebSocketServer } = require('ws');
const lab = require('./wslab');

const wss = new WebSocketServer({ host: lab.host, port: lab.port });
const sockets = new Map(); // client -> its connection

// Every update for a client goes out at once, whatever the client can take.
lab.onPush((message, client) => sockets.get(client)?.send(message));

wss.on('connection', (ws, req) => {
  const client = lab.clientOf(req.url);
  sockets.set(client, ws);
  lab.opened(client);
  lab.pull(undefined, client);

  ws.on('message', async (data) => {
    const reply = await lab.process(data.toString());
    if (reply !== null) ws.send(reply);
  });
});
