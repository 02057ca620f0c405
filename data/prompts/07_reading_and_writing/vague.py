"""A simple request/reply WebSocket server and client with asyncio.

The server reads each request, processes it and sends the result back.
The client sends a request, waits for the reply, then sends the next one.

(As the lab runs it: ``app.process`` is the server's processing,
``app.outgoing()`` yields the client's requests and ``app.deliver`` hands
each reply to the client application.)
"""


async def handler(websocket, app):
    """Handle one client connection: receive, process, reply."""
    async for message in websocket:
        # Process the request
        result = await app.process(message)
        # Send the result back to the client
        if result is not None:
            await websocket.send(result)


async def client(app):
    """Connect, then send each request and print (deliver) its reply."""
    async with app.connect() as websocket:
        async for request in app.outgoing():
            await websocket.send(request)
            # Wait for the server's response before sending the next request
            reply = await websocket.recv()
            await app.deliver(reply)
