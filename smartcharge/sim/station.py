"""A simulated OCPP 1.6J charge point with N connectors, speaking real OCPP over a real WebSocket.

It boots, heartbeats, reports every status change, authorizes, starts and stops transactions and
samples its meters in simulated time (the clock). Transaction messages wait in an ordered outbox
while the station is offline and are replayed, with their original timestamps, on reconnect.
It obeys its charging profiles: each car draws at most the composite limit in force (unless the
`ignore_profiles` quirk says this station misbehaves).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from datetime import datetime, timedelta
from typing import Callable

import aiohttp
from ocpp.exceptions import OCPPError
from ocpp.v16 import call

from smartcharge.tasks import OwnedTasks
from smartcharge.clock import Clock, format_ocpp_time
from smartcharge.sim import configuration
from smartcharge.sim.connection import (OCPP16_SUBPROTOCOL, ConnectionClosed, Outbox,
                                        Outgoing, WsConnection)
from smartcharge.sim.ev import SimEV
from smartcharge.sim.handlers import StationProtocol
from smartcharge.sim.physics import ChargingPhysics
from smartcharge.sim.profiles import Capabilities, ProfileStore
from smartcharge.sim.remote import RemoteControl
from smartcharge.sim.spec import (ConnectorSpec, ConnectorState, Quirks, StationSpec,
                                  Transaction)

__all__ = ["ConnectorSpec", "ConnectorState", "Quirks", "SimStation", "StationSpec",
           "Transaction"]

log = logging.getLogger("smartcharge.sim.station")


class SimStation(ChargingPhysics, RemoteControl):
    """One simulated charge point.

    Scripting: `start()`/`stop()`, `plug_in(connector_id, ev, id_tag)`, `unplug(connector_id)`,
    `start_transaction`/`stop_transaction`, `draw_w(connector_id)`, `go_offline()`/`go_online()`,
    `redeliver(n)`. Waiting: `booted`/`connected` events, `wait_for(predicate)`, `drained()`.
    Looking: `connectors` (state per connector), `profiles` (installed charging profiles),
    `config` (configuration keys), `outbox`, `acknowledged` (every answered queued message).
    """

    def __init__(self, spec: StationSpec, url: str, clock: Clock, *, seed: int = 0,
                 http: aiohttp.ClientSession | None = None) -> None:
        self.spec = spec
        self.url = url.rstrip("/") + "/" + spec.station_id
        self.clock = clock
        self.rng = random.Random(seed)
        quirks = spec.quirks
        units = {"A": ("Current",), "W": ("Power",)}.get(quirks.only_rate_unit or "",
                                                         ("Current", "Power"))
        max_periods = quirks.max_periods or spec.max_periods
        self.config = configuration.default_keys(
            connectors=len(spec.connectors), heartbeat_interval_s=spec.heartbeat_interval_s,
            meter_interval_s=spec.meter_interval_s, max_stack_level=spec.max_stack_level,
            max_periods=max_periods, rate_units=units, max_installed=spec.max_installed)
        self.profiles = ProfileStore(
            tuple(c.connector_id for c in spec.connectors),
            Capabilities(spec.max_stack_level, max_periods, units, spec.max_installed))
        self.connectors = {c.connector_id: ConnectorState(c) for c in spec.connectors}
        self.quirks: Quirks = spec.quirks      # a test may change them while it runs
        self.profile_answers = asyncio.Event()  # releases a `silent_profiles` station's answers
        # called with the station after every profile installed or cleared (tests check sums)
        self.on_profiles_changed: Callable[[SimStation], None] | None = None
        self.outbox = Outbox()
        self.acknowledged: list[tuple[str, object, object]] = []   # (action, request, answer)
        self.keep_acknowledged = True          # the load benchmark turns the record off
        # called with (action, real seconds from send to CALLRESULT) for every queued message
        self.on_acknowledged: Callable[[str, float], None] | None = None
        self.boots = 0
        self.connected = asyncio.Event()
        self.booted = asyncio.Event()
        self._outbox_ready = asyncio.Event()
        self._wake_physics = asyncio.Event()
        self._changed = asyncio.Event()
        self._http = http
        self._own_http = http is None
        self._protocol: StationProtocol | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks = OwnedTasks(log, spec.station_id)
        self._runner: asyncio.Task | None = None
        self._stopping = False
        self._rebooting = False
        self._network_up = asyncio.Event()
        self._network_up.set()
        self._acknowledged_items: list[Outgoing] = []
        # what an answer to the central system promised, done once the answer is sent
        self._deferred: list[Callable[[], object]] = []
        self._last_physics: datetime | None = None
        self._next_sample: datetime | None = None

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
                        self.url, protocols=(OCPP16_SUBPROTOCOL,), headers=headers,
                        autoping=True, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)) as ws:
                    if ws.protocol != OCPP16_SUBPROTOCOL:
                        raise ConnectionClosed(f"server did not accept {OCPP16_SUBPROTOCOL}")
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
        self._ws = ws
        protocol = StationProtocol(self, WsConnection(ws), self.spec.call_timeout_s)
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

    async def _online(self, protocol: StationProtocol) -> None:
        await self._boot(protocol)
        for connector_id in (0, *self.connectors):
            self._notify_status(connector_id)
        await asyncio.gather(self._heartbeat_loop(protocol), self._drain_outbox(protocol))

    async def _boot(self, protocol: StationProtocol) -> None:
        while True:
            answer = await protocol.call(
                call.BootNotification(charge_point_model=self.spec.model,
                                      charge_point_vendor=self.spec.vendor,
                                      charge_point_serial_number=self.spec.station_id,
                                      firmware_version="sim-1"),
                suppress=False)
            if answer.status == "Accepted":
                if answer.interval > 0:
                    self.config["HeartbeatInterval"].value = str(answer.interval)
                self.boots += 1
                self.booted.set()
                await self._notify_changed()
                return
            # Pending or Rejected: ask again after the interval the central system gave
            await self.clock.sleep(answer.interval if answer.interval > 0 else 30)

    async def _heartbeat_loop(self, protocol: StationProtocol) -> None:
        while True:
            interval_s = configuration.as_int(self.config, "HeartbeatInterval") or 300
            await self.clock.sleep(interval_s)
            await protocol.call(call.Heartbeat(), suppress=False)

    async def _drain_outbox(self, protocol: StationProtocol) -> None:
        while True:
            await self._outbox_ready.wait()
            while self.outbox:
                item = self.outbox.head()
                request = item.build()
                sent_at = time.perf_counter()
                try:
                    answer = await protocol.call(request, suppress=False)
                except OCPPError as error:
                    # A CALLERROR: retry a few times (TransactionMessageAttempts), then give up
                    # on this message so one bad message cannot block the rest forever.
                    item.attempts += 1
                    attempts = configuration.as_int(self.config, "TransactionMessageAttempts")
                    log.warning("%s: %s refused (attempt %d): %r", self.spec.station_id,
                                item.action, item.attempts, error)
                    if item.attempts >= max(attempts, 1) or not item.durable:
                        self.outbox.pop_head()
                    else:
                        await self.clock.sleep(configuration.as_int(
                            self.config, "TransactionMessageRetryInterval"))
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
                await self._notify_changed()
            self._outbox_ready.clear()

    def _enqueue(self, item: Outgoing) -> None:
        if not item.durable and not self.booted.is_set():
            return          # live-only messages are not worth queueing; boot resends state
        self.outbox.append(item)
        self._outbox_ready.set()
        self._changed.set()

    async def _notify_changed(self) -> None:
        self._changed.set()

    def _profiles_changed(self) -> None:
        if self.on_profiles_changed is not None:
            self.on_profiles_changed(self)

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

    # ---- status -----------------------------------------------------------------------------

    def _derived_status(self, state: ConnectorState) -> str:
        if state.transaction is not None:
            if state.ev is None or state.ev.full:
                return "SuspendedEV"
            return "Charging" if state.draw_w > 0 else "SuspendedEVSE"
        if not state.operative:
            return "Unavailable"
        if state.ev is not None:
            return "Finishing" if state.finished_transactions else "Preparing"
        return "Available"

    def _refresh_status(self, connector_id: int) -> None:
        state = self.connectors[connector_id]
        status = self._derived_status(state)
        if status != state.status:
            state.status = status
            self._notify_status(connector_id)

    def _notify_status(self, connector_id: int) -> None:
        if connector_id == 0:     # the charge point as a whole
            status = ("Available" if any(c.operative for c in self.connectors.values())
                      else "Unavailable")
        else:
            status = self.connectors[connector_id].status
        timestamp = format_ocpp_time(self.clock.now())
        self._enqueue(Outgoing(
            "StatusNotification",
            lambda: call.StatusNotification(connector_id=connector_id, error_code="NoError",
                                            status=status, timestamp=timestamp),
            self.clock.now(), durable=False))

    # ---- sessions ---------------------------------------------------------------------------

    async def plug_in(self, connector_id: int, ev: SimEV, id_tag: str | None = None) -> bool:
        """A car is plugged in; with an id tag, the driver also badges. Returns True when a
        transaction started (or was started offline), False when authorization failed."""
        state = self._connector(connector_id)
        if state.ev is not None:
            raise ValueError(f"{self.spec.station_id} connector {connector_id} is occupied")
        self.advance_to(self.clock.now())
        state.ev = ev
        ev.phases = self._phases_in_use(state)
        state.finished_transactions.clear()
        self._refresh_status(connector_id)
        if not state.operative:
            return False
        if state.pending_remote_id_tag is not None:
            id_tag, state.pending_remote_id_tag = state.pending_remote_id_tag, None
            self.start_transaction(connector_id, id_tag)
            return True
        if id_tag is None:
            return False
        return await self.authorize_and_start(connector_id, id_tag)

    async def authorize_and_start(self, connector_id: int, id_tag: str) -> bool:
        protocol = self._protocol
        if protocol is not None and self.booted.is_set():
            try:
                answer = await protocol.call(call.Authorize(id_tag=id_tag), suppress=False)
                if answer.id_tag_info.get("status") != "Accepted":
                    return False
            except (OCPPError, asyncio.TimeoutError, ConnectionError) as error:
                # LocalAuthorizeOffline: the network failed us, not the driver
                log.info("%s: Authorize failed (%r), authorizing locally",
                         self.spec.station_id, error)
        self.start_transaction(connector_id, id_tag)
        return True

    def start_transaction(self, connector_id: int, id_tag: str) -> Transaction:
        state = self._connector(connector_id)
        if state.transaction is not None:
            raise ValueError(f"{self.spec.station_id} connector {connector_id} is already "
                             f"in a transaction")
        now = self.clock.now()
        self.advance_to(now)
        tx = Transaction(connector_id, id_tag, int(state.register_wh), now)
        state.transaction = tx
        timestamp = format_ocpp_time(now)

        def on_result(answer) -> None:
            tx.transaction_id = answer.transaction_id
            tx.id_tag_status = answer.id_tag_info.get("status")
            if (tx.id_tag_status != "Accepted" and state.transaction is tx
                    and configuration.as_bool(self.config, "StopTransactionOnInvalidId")):
                self.stop_transaction(connector_id, "DeAuthorized")

        self._enqueue(Outgoing(
            "StartTransaction",
            lambda: call.StartTransaction(connector_id=connector_id, id_tag=id_tag,
                                          meter_start=tx.meter_start_wh, timestamp=timestamp),
            now, durable=True, on_result=on_result))
        self._update_draws(now)
        self._wake_physics.set()
        return tx

    def stop_transaction(self, connector_id: int, reason: str = "Local") -> Transaction | None:
        state = self._connector(connector_id)
        tx = state.transaction
        if tx is None:
            return None
        now = self.clock.now()
        self.advance_to(now)
        begin = self.meter_value(connector_id, tx.started_at, "Transaction.Begin")
        begin["sampledValue"] = [v for v in begin["sampledValue"]
                                 if v["measurand"] == "Energy.Active.Import.Register"]
        begin["sampledValue"][0]["value"] = str(tx.meter_start_wh)
        end = self.meter_value(connector_id, now, "Transaction.End")
        end["sampledValue"] = [v for v in end["sampledValue"]
                               if v["measurand"] == "Energy.Active.Import.Register"]
        meter_stop_wh = int(state.register_wh)
        timestamp = format_ocpp_time(now)
        state.transaction = None
        state.finished_transactions.append(tx)
        self.profiles.end_transaction(connector_id)
        self._enqueue(Outgoing(
            "StopTransaction",
            lambda: call.StopTransaction(
                meter_stop=meter_stop_wh, timestamp=timestamp,
                transaction_id=tx.transaction_id if tx.transaction_id is not None else -1,
                reason=reason, id_tag=tx.id_tag, transaction_data=[begin, end]),
            now, durable=True))
        if state.unavailable_after_transaction:
            state.operative = False
            state.unavailable_after_transaction = False
        self._update_draws(now)
        return tx

    async def unplug(self, connector_id: int) -> Transaction | None:
        """The car leaves; a running transaction stops with reason EVDisconnected."""
        state = self._connector(connector_id)
        tx = self.stop_transaction(connector_id, "EVDisconnected")
        state.ev = None
        state.finished_transactions.clear()
        self._refresh_status(connector_id)
        return tx

    def _connector(self, connector_id: int) -> ConnectorState:
        state = self.connectors.get(connector_id)
        if state is None:
            raise ValueError(f"{self.spec.station_id} has no connector {connector_id}")
        return state

    def draw_w(self, connector_id: int) -> float:
        self.advance_to(self.clock.now())
        return self.connectors[connector_id].draw_w

    def total_draw_w(self) -> float:
        self.advance_to(self.clock.now())
        return sum(s.draw_w for s in self.connectors.values())

def _basic_auth(user: str, password: str) -> str:
    # OCPP security profile 1: HTTP Basic, user = the charge point identity
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
