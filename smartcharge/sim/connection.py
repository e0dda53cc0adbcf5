"""The station's side of the wire: the aiohttp WebSocket as the `ocpp` library wants it, and the
ordered outbox of messages waiting to be sent.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import aiohttp

OCPP16_SUBPROTOCOL = "ocpp1.6"
OCPP201_SUBPROTOCOL = "ocpp2.0.1"


class ConnectionClosed(ConnectionError):
    """The central system closed the WebSocket (or it broke)."""


class WsConnection:
    """`recv()`/`send()` over an aiohttp client WebSocket, as `ocpp.ChargePoint` expects."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    async def recv(self) -> str:
        message = await self._ws.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            return message.data
        if message.type == aiohttp.WSMsgType.BINARY:
            return message.data.decode("utf-8", errors="replace")
        raise ConnectionClosed(f"websocket ended: {message.type.name} {message.extra!r}")

    async def send(self, text: str) -> None:
        if self._ws.closed:
            raise ConnectionClosed("websocket is closed")
        await self._ws.send_str(text)


_sequence = itertools.count(1)


@dataclass
class Outgoing:
    """One message waiting in the outbox.

    `build` makes the payload at send time, so a StopTransaction queued before its
    StartTransaction was answered still carries the transactionId the central system assigned.
    Transaction messages are `durable`: they survive disconnects and reboots and are replayed in
    order; the rest (status notifications) only make sense live and are dropped when offline.
    """

    action: str
    build: Callable[[], Any]
    created_at: datetime
    durable: bool
    on_result: Callable[[Any], None] | None = None
    attempts: int = 0
    sequence: int = field(default_factory=lambda: next(_sequence))


class Outbox:
    def __init__(self, max_meter_values: int = 50_000) -> None:
        self._items: deque[Outgoing] = deque()
        self._max_meter_values = max_meter_values
        self.dropped_meter_values = 0

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def queued(self) -> list[Outgoing]:
        """A copy of what waits, oldest first."""
        return list(self._items)

    def head(self) -> Outgoing:
        return self._items[0]

    def pop_head(self) -> Outgoing:
        return self._items.popleft()

    def append(self, item: Outgoing) -> None:
        self._items.append(item)
        if item.action == "MeterValues" and len(self._items) > self._max_meter_values:
            # bounded memory for a station offline for days: lose the oldest samples, never a
            # start or a stop (the bill is made from their registers).
            oldest = next(i for i in self._items if i.action == "MeterValues")
            self._items.remove(oldest)
            self.dropped_meter_values += 1

    def drop_live(self) -> None:
        self._items = deque(i for i in self._items if i.durable)

    def pending(self, action: str | None = None) -> int:
        return sum(1 for i in self._items if action is None or i.action == action)
