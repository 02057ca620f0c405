"""Token-authenticated WebSocket server and client.

The client fetches a JWT from the auth service and sends it in the ``Authorization``
header of the opening handshake. The server verifies it before serving the connection
and closes unauthenticated connections with code 4401, so only clients with a valid
token can connect. The client keeps websockets' automatic reconnection.

(In the lab, ``app.fetch_token()`` stands for the call to the auth service and
``app.verify_token()`` for ``jwt.decode(token, key, algorithms=["HS256"])``.)
"""

import logging

from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)


async def handler(websocket, app):
    """Authenticate the connection, then process every message it sends."""
    header = websocket.request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip()
    try:
        app.verify_token(token)
    except Exception as exc:
        logger.warning("rejected connection: %s", exc)
        await websocket.close(4401, "invalid token")
        return

    try:
        async for message in websocket:
            await app.process(message)
    except ConnectionClosed:
        logger.info("client disconnected")


async def client(app):
    """Connect with the token; reconnect automatically if the connection drops."""
    token = await app.fetch_token()
    headers = {"Authorization": f"Bearer {token}"}
    # Iterating over connect() reconnects with exponential backoff.
    async for websocket in app.connect(additional_headers=headers):
        try:
            async for message in app.outgoing():
                await websocket.send(message)
            return  # nothing more to send
        except ConnectionClosed:
            logger.warning("connection lost, reconnecting...")
            continue
