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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import aiohttp
from ocpp.exceptions import OCPPError
from ocpp.v16 import call

from smartcharge import model
from smartcharge.clock import Clock, format_ocpp_time
from smartcharge.sim import configuration
from smartcharge.sim.connection import (OCPP16_SUBPROTOCOL, ConnectionClosed, Outbox,
                                        Outgoing, WsConnection)
from smartcharge.sim.ev import SimEV
from smartcharge.sim.handlers import StationProtocol
from smartcharge.sim.profiles import (Capabilities, ProfileRejected, ProfileStore, TxContext,
                                      parse_profile)

log = logging.getLogger("smartcharge.sim.station")
PHASE_NAMES = ("L1", "L2", "L3")


@dataclass(frozen=True)
class Quirks:
    """Ways real stations misbehave, for the controller's tests."""

    reject_all_profiles: bool = False
    reject_zero_limit: bool = False
    only_rate_unit: str | None = None      # "A" or "W": the other unit is rejected
    max_periods: int | None = None         # ChargingScheduleMaxPeriods
    ignore_profiles: bool = False          # accepts profiles, then draws what the car wants
    forget_profiles_on_reboot: bool = False


@dataclass(frozen=True)
class ConnectorSpec:
    connector_id: int
    phases: int = 3
    max_current_a: float = 32.0
    min_current_a: float = 6.0


@dataclass(frozen=True)
class StationSpec:
    station_id: str
    connectors: tuple[ConnectorSpec, ...]
    password: str | None = None
    voltage_v: float = 230.0
    max_current_a: float | None = None
    max_power_w: float | None = None
    vendor: str = "smartcharge"
    model: str = "SimStation"
    quirks: Quirks = Quirks()
    heartbeat_interval_s: int = 300
    meter_interval_s: int = 60
    physics_step_s: float = 60.0           # longest simulated step between physics updates
    call_timeout_s: float = 10.0           # real seconds to wait for a central-system answer
    reconnect_min_s: float = 0.2           # real seconds: reconnecting is about the network
    reconnect_max_s: float = 10.0
    max_stack_level: int = 10
    max_periods: int = 24
    max_installed: int = 16
    resume_after_reset: bool = True        # a car still plugged in starts a new session

    @classmethod
    def from_model(cls, station: model.Station, **overrides) -> StationSpec:
        connectors = tuple(
            ConnectorSpec(c.connector_id, c.phases, c.max_current_a, c.min_current_a)
            for c in station.connectors)
        return cls(station_id=station.station_id, connectors=connectors,
                   password=station.password, voltage_v=station.voltage_v,
                   max_current_a=station.max_current_a, max_power_w=station.max_power_w,
                   **overrides)


@dataclass
class Transaction:
    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: datetime
    transaction_id: int | None = None      # assigned by the central system
    id_tag_status: str | None = None

    def context(self) -> TxContext:
        return TxContext(self.transaction_id, self.started_at)


@dataclass
class ConnectorState:
    spec: ConnectorSpec
    status: str = "Available"
    operative: bool = True
    unavailable_after_transaction: bool = False
    ev: SimEV | None = None
    transaction: Transaction | None = None
    pending_remote_id_tag: str | None = None
    register_wh: float = 0.0               # Energy.Active.Import.Register, never decreases
    draw_w: float = 0.0                    # what the car draws right now
    limit_w: float | None = None           # composite limit in force, None = none
    finished_transactions: list[Transaction] = field(default_factory=list)


class SimStation:
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
        self._tasks: set[asyncio.Task] = set()
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
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
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
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.spec.station_id,
                      exc_info=task.exception())

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
        if connector_id == 0:
            status = "Available"
        else:
            status = self.connectors[connector_id].status
        timestamp = format_ocpp_time(self.clock.now())
        self._enqueue(Outgoing(
            "StatusNotification",
            lambda: call.StatusNotification(connector_id=connector_id, error_code="NoError",
                                            status=status, timestamp=timestamp),
            self.clock.now(), durable=False))

    # ---- physics and metering ---------------------------------------------------------------

    def _tx_contexts(self) -> dict[int, TxContext | None]:
        return {cid: (s.transaction.context() if s.transaction else None)
                for cid, s in self.connectors.items()}

    def advance_to(self, now: datetime) -> None:
        """Integrate every car's charging up to `now`, splitting at profile changes, so a car
        never draws above a limit that came into force within the step."""
        last = self._last_physics or now
        while last < now:
            change = self.profiles.next_change(last, self._tx_contexts())
            segment_end = now if change is None or change > now else change
            dt_s = (segment_end - last).total_seconds()
            for state in self.connectors.values():
                if state.transaction is not None and state.ev is not None:
                    drawn_w = state.ev.advance(dt_s, state.draw_w)
                    state.register_wh += drawn_w * dt_s / 3600.0
            last = segment_end
            self._update_draws(last)
        self._last_physics = max(last, self._last_physics or last)
        self._update_draws(self._last_physics)

    def _update_draws(self, at: datetime) -> None:
        voltage_v = self.spec.voltage_v
        obey = not self.spec.quirks.ignore_profiles
        offers: dict[int, float] = {}
        for cid, state in self.connectors.items():
            if state.transaction is None or state.ev is None or not state.operative:
                offers[cid] = 0.0
                state.limit_w = None
                continue
            phases = self._phases_in_use(state)
            offer_w = state.spec.max_current_a * voltage_v * phases
            limit_w = self.profiles.limit_w(cid, at, state.transaction.context(),
                                            voltage_v=voltage_v, phases_in_use=phases)
            state.limit_w = limit_w
            if obey and limit_w is not None:
                offer_w = min(offer_w, limit_w)
                # IEC 61851: below the minimum current a car cannot charge at all
                if offer_w < state.spec.min_current_a * voltage_v * phases - 1e-6:
                    offer_w = 0.0
            offers[cid] = min(offer_w, state.ev.acceptance_w())
        station_cap_w = self._station_cap_w(at, obey)
        total_w = sum(offers.values())
        scale = 1.0 if station_cap_w is None or total_w <= station_cap_w else (
            station_cap_w / total_w)
        for cid, state in self.connectors.items():
            state.draw_w = offers[cid] * scale
        for cid in self.connectors:
            self._refresh_status(cid)

    def _station_cap_w(self, at: datetime, obey: bool) -> float | None:
        caps = []
        if self.spec.max_power_w is not None:
            caps.append(self.spec.max_power_w)
        if self.spec.max_current_a is not None:
            caps.append(self.spec.max_current_a * self.spec.voltage_v * 3)
        limit = self.profiles.station_limit(at) if obey else None
        if limit is not None:
            caps.append(limit.to_w(self.spec.voltage_v, 3))
        return min(caps, default=None)

    @staticmethod
    def _phases_in_use(state: ConnectorState) -> int:
        if state.ev is None:
            return state.spec.phases
        return 1 if state.spec.phases == 1 or state.ev.onboard_phases == 1 else 3

    async def _physics_loop(self) -> None:
        while True:
            now = self.clock.now()
            interval_s = configuration.as_int(self.config, "MeterValueSampleInterval")
            if interval_s <= 0:
                self._next_sample = None
            elif self._next_sample is None:
                # a seeded phase per station: real stations do not all sample in one instant
                self._next_sample = now.replace(microsecond=0) + _seconds(
                    1 + self.rng.randrange(interval_s))
            elif self._next_sample <= now:
                # sample at the scheduled moment, not when the event loop got round to it, so
                # samples keep their interval however late this task wakes up
                at = max(self._next_sample, self._last_physics or self._next_sample)
                self.advance_to(at)
                self.sample_all(at)
                self._next_sample += _seconds(interval_s)
                if self._next_sample <= at:
                    self._next_sample = at + _seconds(interval_s)
            self.advance_to(now)
            wake = now + _seconds(self.spec.physics_step_s)
            if self._next_sample is not None:
                wake = min(wake, self._next_sample)
            change = self.profiles.next_change(now, self._tx_contexts())
            if change is not None:
                wake = min(wake, change)
            real_s = max((wake - now).total_seconds(), 0.0) / self.clock.speed
            self._wake_physics.clear()
            try:
                await asyncio.wait_for(self._wake_physics.wait(), timeout=real_s + 1e-4)
            except asyncio.TimeoutError:
                pass

    def meter_value(self, connector_id: int, at: datetime, context: str) -> dict:
        state = self.connectors[connector_id]
        phases = self._phases_in_use(state)
        current_a = state.draw_w / (self.spec.voltage_v * phases) if phases else 0.0
        sampled = [
            {"value": str(int(state.register_wh)), "context": context,
             "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
            {"value": f"{state.draw_w:.1f}", "context": context,
             "measurand": "Power.Active.Import", "location": "Outlet", "unit": "W"},
        ]
        for phase in PHASE_NAMES[:phases]:
            sampled.append({"value": f"{current_a:.2f}", "context": context,
                            "measurand": "Current.Import", "location": "Outlet",
                            "phase": phase, "unit": "A"})
        if state.ev is not None:
            sampled.append({"value": str(int(state.ev.soc * 100)), "context": context,
                            "measurand": "SoC", "location": "EV", "unit": "Percent"})
        return {"timestamp": format_ocpp_time(at), "sampledValue": sampled}

    def sample_all(self, at: datetime, context: str = "Sample.Periodic") -> None:
        for cid, state in self.connectors.items():
            if state.transaction is not None:
                self._enqueue_meter_values(cid, state.transaction, at, context)

    def _enqueue_meter_values(self, connector_id: int, tx: Transaction | None, at: datetime,
                              context: str) -> None:
        value = self.meter_value(connector_id, at, context)

        def build():
            tx_id = None if tx is None else (tx.transaction_id
                                             if tx.transaction_id is not None else -1)
            return call.MeterValues(connector_id=connector_id, meter_value=[value],
                                    transaction_id=tx_id)
        self._enqueue(Outgoing("MeterValues", build, at, durable=tx is not None))

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

    # ---- the central system's calls (handlers.py answers with these) ------------------------

    def remote_start(self, id_tag: str, connector_id: int | None, profile: dict | None) -> str:
        if connector_id is None:
            free = [cid for cid, s in self.connectors.items()
                    if s.transaction is None and s.operative]
            plugged = [cid for cid in free if self.connectors[cid].ev is not None]
            if not free:
                return "Rejected"
            connector_id = (plugged or free)[0]
        state = self.connectors.get(connector_id)
        if state is None or state.transaction is not None or not state.operative:
            return "Rejected"
        if profile is not None and profile.get("charging_profile_purpose") != "TxProfile":
            return "Rejected"
        self._deferred.append(
            lambda: self._spawn(self._remote_start(connector_id, id_tag, profile)))
        return "Accepted"

    async def _remote_start(self, connector_id: int, id_tag: str, profile: dict | None) -> None:
        state = self.connectors[connector_id]
        if state.ev is None:
            state.pending_remote_id_tag = id_tag     # starts when the cable goes in
            return
        if configuration.as_bool(self.config, "AuthorizeRemoteTxRequests"):
            if not await self.authorize_and_start(connector_id, id_tag):
                return
        else:
            self.start_transaction(connector_id, id_tag)
        if profile is not None:
            self.set_charging_profile(connector_id, profile)

    def remote_stop(self, transaction_id: int) -> str:
        for cid, state in self.connectors.items():
            if state.transaction is not None and state.transaction.transaction_id == transaction_id:
                self._deferred.append(lambda cid=cid: self.stop_transaction(cid, "Remote"))
                return "Accepted"
        return "Rejected"

    def change_availability(self, connector_id: int, kind: str) -> str:
        if connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        targets = list(self.connectors) if connector_id == 0 else [connector_id]
        scheduled = False
        for cid in targets:
            state = self.connectors[cid]
            if kind == "Inoperative" and state.transaction is not None:
                state.unavailable_after_transaction = True
                scheduled = True
                continue
            state.unavailable_after_transaction = False
            state.operative = kind == "Operative"
            self._refresh_status(cid)
        return "Scheduled" if scheduled else "Accepted"

    def unlock(self, connector_id: int) -> str:
        if connector_id not in self.connectors:
            return "NotSupported"
        self._deferred.append(lambda: self.stop_transaction(connector_id, "UnlockCommand"))
        return "Unlocked"

    def run_deferred(self) -> None:
        actions, self._deferred = self._deferred, []
        for action in actions:
            action()

    def request_reset(self, kind: str) -> None:
        self._spawn(self._reset(kind))

    async def _reset(self, kind: str) -> None:
        resume = {}
        for cid, state in self.connectors.items():
            if state.transaction is not None:
                resume[cid] = state.transaction.id_tag
                self.stop_transaction(cid, "SoftReset" if kind == "Soft" else "HardReset")
        if kind == "Soft" and self.booted.is_set():
            try:   # a soft reset lets the stops go out first; a hard one sends them after boot
                await self.drained(timeout_s=self.spec.call_timeout_s)
            except asyncio.TimeoutError:
                pass
        if self.spec.quirks.forget_profiles_on_reboot:
            self.profiles.clear()
        boots_before = self.boots
        self._rebooting = True
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self.spec.resume_after_reset and resume:
            try:
                await self.wait_for(lambda: self.boots > boots_before, timeout_s=30.0)
            except asyncio.TimeoutError:
                return
            for cid, id_tag in resume.items():
                state = self.connectors[cid]
                if state.ev is not None and state.transaction is None and not state.ev.full:
                    self.start_transaction(cid, id_tag)

    _TRIGGERABLE = ("StatusNotification", "MeterValues", "Heartbeat", "BootNotification",
                    "DiagnosticsStatusNotification", "FirmwareStatusNotification")

    def trigger_status(self, requested: str, connector_id: int | None) -> str:
        if connector_id is not None and connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        return "Accepted" if requested in self._TRIGGERABLE else "NotImplemented"

    def trigger(self, requested: str, connector_id: int | None) -> None:
        """Send what TriggerMessage asked for (after answering it)."""
        targets = list(self.connectors) if not connector_id else [connector_id]
        if requested == "StatusNotification":
            for cid in ([0] if connector_id is None else []) + targets:
                self._notify_status(cid)
        elif requested == "MeterValues":
            now = self.clock.now()
            self.advance_to(now)
            for cid in targets:
                tx = self.connectors[cid].transaction
                self._enqueue_meter_values(cid, tx, now, "Trigger")
        elif requested == "Heartbeat":
            self._spawn(self._live_call(call.Heartbeat()))
        elif requested == "BootNotification":
            self._spawn(self._live_call(call.BootNotification(
                charge_point_model=self.spec.model, charge_point_vendor=self.spec.vendor)))
        elif requested == "DiagnosticsStatusNotification":
            self._spawn(self._live_call(call.DiagnosticsStatusNotification(status="Idle")))
        elif requested == "FirmwareStatusNotification":
            self._spawn(self._live_call(call.FirmwareStatusNotification(status="Idle")))

    async def _live_call(self, request) -> None:
        protocol = self._protocol
        if protocol is not None:
            try:
                await protocol.call(request, suppress=False)
            except (OCPPError, asyncio.TimeoutError, ConnectionError) as error:
                log.info("%s: %s failed: %r", self.spec.station_id,
                         type(request).__name__, error)

    def configuration_changed(self, key: str) -> None:
        if key == "MeterValueSampleInterval":
            self._next_sample = None
            self._wake_physics.set()

    def set_charging_profile(self, connector_id: int, data: dict) -> str:
        quirks = self.spec.quirks
        if quirks.reject_all_profiles:
            return "Rejected"
        now = self.clock.now()
        state = self.connectors.get(connector_id)
        tx = state.transaction.context() if state and state.transaction else None
        try:
            profile = parse_profile(connector_id, data, now)
            if quirks.reject_zero_limit and any(
                    p.limit == 0 for p in profile.schedule.periods):
                raise ProfileRejected("this station does not take a limit of 0")
            self.advance_to(now)
            self.profiles.install(profile, tx)
        except (ProfileRejected, ValueError, KeyError, TypeError) as error:
            log.info("%s: profile rejected: %s", self.spec.station_id, error)
            return "Rejected"
        self._update_draws(now)
        self._wake_physics.set()
        return "Accepted"

    def clear_charging_profile(self, **criteria) -> int:
        self.advance_to(self.clock.now())
        removed = self.profiles.clear(**criteria)
        self._update_draws(self.clock.now())
        self._wake_physics.set()
        return removed

    def composite_schedule(self, connector_id: int, duration_s: int,
                           unit: str | None) -> tuple[str, dict] | None:
        if connector_id != 0 and connector_id not in self.connectors:
            return None
        allowed = self.profiles.capabilities.allowed_units
        if unit is None:
            unit = "A" if "Current" in allowed else "W"
        if (unit == "A" and "Current" not in allowed) or (unit == "W" and "Power" not in allowed):
            return None
        now = self.clock.now().replace(microsecond=0)
        if connector_id == 0:
            phases, tx = 3, None
            fallback_w = self._station_cap_w(now, obey=False) or sum(
                c.spec.max_current_a * self.spec.voltage_v * c.spec.phases
                for c in self.connectors.values())
        else:
            state = self.connectors[connector_id]
            phases = self._phases_in_use(state)
            tx = state.transaction.context() if state.transaction else None
            fallback_w = state.spec.max_current_a * self.spec.voltage_v * phases
        schedule = self.profiles.composite_schedule(
            connector_id, now, duration_s, unit, tx, voltage_v=self.spec.voltage_v,
            phases=phases, fallback_w=fallback_w)
        return format_ocpp_time(now), {
            "duration": duration_s,
            "start_schedule": format_ocpp_time(now),
            "charging_rate_unit": unit,
            "charging_schedule_period": [
                {"start_period": p.start_s, "limit": p.limit, "number_phases": p.number_phases}
                for p in schedule.periods],
        }


def _basic_auth(user: str, password: str) -> str:
    # OCPP security profile 1: HTTP Basic, user = the charge point identity
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
