"""The ASGI server: auth, REST routes, and (later) the websocket endpoint and dispatcher."""
