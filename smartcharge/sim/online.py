"""The station's side of the network, whatever its OCPP version: connect (and keep
reconnecting with backoff) offering the one subprotocol of the station, boot, heartbeat, and
drain the ordered outbox — transaction messages wait there while the station is offline and are
replayed, in order and with their original timestamps, when it is back."""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import aiohttp
from ocpp.exceptions import OCPPError

from smartcharge.sim.connection import ConnectionClosed, Outgoing, WsConnection

log = logging.getLogger("smartcharge.sim.station")


class Online:
    """Mixin of StationCore: needs `spec`, `url`, `clock`, `rng`, `outbox`, the events and
    tasks `StationCore.__init__` makes, and the protocol hooks (`_make_protocol`, `_boot`,
    `_report_all_statuses`, `_heartbeat_interval_s`, `_heartbeat_request`,
    `_message_attempts`, `_physics_loop`)."""

    SUBPROTOCOL = ""                 # the one WebSocket subprotocol this station offers

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self, http: aiohttp.ClientSession | None = None) -> None:
        """Connect (and keep reconnecting) in the background; `http` shares a client session."""
        if self._runner is not None:
            return
        if http is not None:
            self._http, self._own_http = http, False
        if self._http is None:
            self._http = aiohttp.ClientSession()
            self._own_http = True
        self._last_physics = self.clock.now()
        self._runner = asyncio.create_task(self._run(), name=f"sim-{self.spec.station_id}")
        self._spawn(self._physics_loop())

    async def stop(self) -> None:
        self._stopping = True
        tasks = self._tasks.cancel_all()
        if self._runner is not None:
            self._runner.cancel()
            tasks.append(self._runner)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._own_http and self._http is not None:
            await self._http.close()
        self._runner = None

    async def go_offline(self) -> None:
        """A network outage: drop the connection and stay away until `go_online()`. The
        station keeps charging, sampling and queueing meanwhile."""
        self._network_up.clear()
        ws = self._ws
        if ws is not None:
            await ws.close()

    def go_online(self) -> None:
        self._network_up.set()

    def redeliver(self, count: int) -> int:
        """Queue the last `count` acknowledged transaction messages again, as a station does
        that never saw the answers (the central system must not count them twice)."""
        again = [item for item in self._acknowledged_items if item.durable][-count:]
        for item in again:
            self._enqueue(Outgoing(item.action, item.build, item.created_at, durable=True))
        return len(again)

    def _spawn(self, coro) -> asyncio.Task:
        return self._tasks.spawn(coro)

    async def _run(self) -> None:
        backoff_s = self.spec.reconnect_min_s
        headers = ({"Authorization": _basic_auth(self.spec.station_id, self.spec.password)}
                   if self.spec.password else None)
        while not self._stopping:
            await self._network_up.wait()
            try:
                async with self._http.ws_connect(
                        self.url, protocols=(self.SUBPROTOCOL,), headers=headers,
                        autoping=True, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)) as ws:
                    if ws.protocol != self.SUBPROTOCOL:
                        raise ConnectionClosed(f"server did not accept {self.SUBPROTOCOL}")
                    backoff_s = self.spec.reconnect_min_s
                    await self._session(ws)
            except (aiohttp.ClientError, OSError, ConnectionClosed, asyncio.TimeoutError) as error:
                log.info("%s: connection lost or refused: %s", self.spec.station_id, error)
            except OCPPError as error:
                log.warning("%s: central system answered with an error: %r",
                            self.spec.station_id, error)
            finally:
                self._ws = None
                self._protocol = None
                self.connected.clear()
                self.booted.clear()
                self.outbox.drop_live()
                self._changed.set()
            if self._stopping:
                break
            if self._rebooting:
                self._rebooting = False
                continue
            await asyncio.sleep(backoff_s * (0.5 + self.rng.random()))
            backoff_s = min(backoff_s * 2, self.spec.reconnect_max_s)

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._connected_at = self.clock.now()   # what was queued before: dripped (quirk)
        self._ws = ws
        protocol = self._make_protocol(WsConnection(ws))
        self._protocol = protocol
        self.connected.set()
        reader = asyncio.create_task(protocol.start())
        online = asyncio.create_task(self._online(protocol))
        try:
            done, _ = await asyncio.wait({reader, online}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (reader, online):
                task.cancel()
            await asyncio.gather(reader, online, return_exceptions=True)

    async def _online(self, protocol) -> None:
        if self.boots and self.quirks.no_boot_on_reconnect:
            self.booted.set()   # registered on an earlier connection: no reboot, no boot
        else:
            await self._boot(protocol)
        self._report_all_statuses()
        await asyncio.gather(self._heartbeat_loop(protocol), self._drain_outbox(protocol))

    async def _heartbeat_loop(self, protocol) -> None:
        while True:
            await self.clock.sleep(self._heartbeat_interval_s() or 300)
            await protocol.call(self._heartbeat_request(), suppress=False)

    async def _drain_outbox(self, protocol) -> None:
        while True:
            await self._outbox_ready.wait()
            while self.outbox:
                item = self.outbox.head()
                request = item.build()
                sent_at = time.perf_counter()
                try:
                    answer = await protocol.call(request, suppress=False)
                except OCPPError as error:
                    # A CALLERROR: retry a few times (the message attempts setting), then give
                    # up on this message so one bad message cannot block the rest forever.
                    item.attempts += 1
                    attempts, retry_s = self._message_attempts()
                    log.warning("%s: %s refused (attempt %d): %r", self.spec.station_id,
                                item.action, item.attempts, error)
                    if item.attempts >= max(attempts, 1) or not item.durable:
                        self.outbox.pop_head()
                    else:
                        await self.clock.sleep(retry_s)
                    continue
                if self.on_acknowledged is not None:
                    self.on_acknowledged(item.action, time.perf_counter() - sent_at)
                self.outbox.pop_head()
                if self.keep_acknowledged:
                    self.acknowledged.append((item.action, request, answer))
                if item.durable:
                    self._acknowledged_items.append(item)
                    del self._acknowledged_items[:-1000]
                if item.on_result is not None:
                    item.on_result(answer)
                self._changed.set()
                drip_s = self.spec.quirks.drip_queue_s
                if drip_s and item.durable and item.created_at < self._connected_at:
                    await self.clock.sleep(drip_s)
            self._outbox_ready.clear()

    def _enqueue(self, item: Outgoing) -> None:
        if not item.durable and not self.booted.is_set():
            return          # live-only messages are not worth queueing; boot resends state
        self.outbox.append(item)
        self._outbox_ready.set()
        self._changed.set()

    async def wait_for(self, predicate, timeout_s: float = 10.0) -> None:
        """Wait (real time, bounded) until `predicate()` holds; re-checked whenever a message
        is queued or acknowledged and on every boot."""
        async def waiter() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(waiter(), timeout_s)

    async def drained(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued message was acknowledged."""
        await self.wait_for(lambda: not self.outbox and self.booted.is_set(), timeout_s)

    async def _live_call(self, request) -> None:
        """A call whose answer nobody waits for (a triggered message)."""
        protocol = self._protocol
        if protocol is not None:
            try:
                await protocol.call(request, suppress=False)
            except (OCPPError, asyncio.TimeoutError, ConnectionError) as error:
                log.info("%s: %s failed: %r", self.spec.station_id,
                         type(request).__name__, error)


def _basic_auth(user: str, password: str) -> str:
    # OCPP security profile 1: HTTP Basic, user = the charge point identity
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
