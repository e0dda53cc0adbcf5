"""OCPP: the WebSocket endpoint, one adapter per protocol version, and the live station links."""
