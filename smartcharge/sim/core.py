"""What every simulated station does, whatever OCPP version it speaks.

The network side (connect, boot loop, heartbeat, the ordered outbox replayed after an outage) is
`online.Online`; the charging physics `physics.ChargingPhysics`; the installed profiles
`profile_ops` and `profiles`. This class adds the connectors' state, plug-in, authorization and
the end of a transaction, and reboots on a reset. A protocol version adds the messages:
`station.SimStation` (OCPP 1.6J) and `v201.station.SimStation201` (OCPP 2.0.1) fill in the hooks
at the end of this class.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime
from typing import Callable

import aiohttp
from ocpp.exceptions import OCPPError

from smartcharge.clock import Clock, OffsetClock
from smartcharge.sim.connection import Outbox, Outgoing, WsConnection
from smartcharge.sim.ev import SimEV
from smartcharge.sim.online import Online
from smartcharge.sim.physics import ChargingPhysics
from smartcharge.sim.profile_ops import ProfileOperations
from smartcharge.sim.spec import ConnectorState, Quirks, StationSpec, Transaction
from smartcharge.tasks import OwnedTasks

log = logging.getLogger("smartcharge.sim.station")


class StationCore(Online, ProfileOperations, ChargingPhysics):
    """One simulated charging station, without its protocol.

    Scripting: `start()`/`stop()`, `plug_in(connector_id, ev, id_tag)`, `unplug(connector_id)`,
    `start_transaction`/`stop_transaction`, `draw_w(connector_id)`, `go_offline()`/`go_online()`,
    `redeliver(n)`. Waiting: `booted`/`connected` events, `wait_for(predicate)`, `drained()`.
    Looking: `connectors` (state per connector; an OCPP 2.0.1 station has one connector per EVSE,
    keyed by evseId), `profiles` (installed charging profiles), `outbox`, `acknowledged` (every
    answered queued message).
    """

    def __init__(self, spec: StationSpec, url: str, clock: Clock, *, seed: int = 0,
                 http: aiohttp.ClientSession | None = None) -> None:
        self.spec = spec
        self.url = url.rstrip("/") + "/" + spec.station_id
        # the station's own clock (StationSpec.clock_offset_s): what it reads profiles by
        self.clock = OffsetClock(clock, spec.clock_offset_s) if spec.clock_offset_s else clock
        self.rng = random.Random(seed)
        self.connectors = {c.connector_id: ConnectorState(c) for c in spec.connectors}
        self.quirks: Quirks = spec.quirks      # a test may change them while it runs
        self.refused_before_boot: list[str] = []   # actions refused (refuse_before_boot)
        # every TriggerMessage received: (requestedMessage, connector / EVSE id or None)
        self.triggers_received: list[tuple[str, int | None]] = []
        self.profile_answers = asyncio.Event()  # releases a `silent_profiles` station's answers
        self.profiles_held = 0   # profile requests a `silent_profiles` station has not answered
        # called with the station after every profile installed or cleared (tests check sums)
        self.on_profiles_changed: Callable[[StationCore], None] | None = None
        # called just before a profile is installed or cleared (a test's "before" at one instant)
        self.on_profiles_changing: Callable[[StationCore], None] | None = None
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
        self._protocol = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected_at = self.clock.now()   # the current connection opened (drip_queue_s)
        self._tasks = OwnedTasks(log, spec.station_id)
        self._runner: asyncio.Task | None = None
        self._stopping = False
        self._rebooting = False
        self._network_up = asyncio.Event()
        self._network_up.set()
        self._acknowledged_items: list[Outgoing] = []
        # what an answer to the central system promised, done once the answer is sent
        self._deferred: list[Callable[[], object]] = []
        self._last_physics = None
        self._next_sample = None

    async def hold_profile_answer(self) -> None:
        """A `silent_profiles` station is hung: no answer to a profile request (and no other
        inbound message) until a test releases `profile_answers`."""
        if not self.quirks.silent_profiles:
            return
        self.profiles_held += 1
        try:
            await self.profile_answers.wait()
        finally:
            self.profiles_held -= 1

    async def hold_configuration_answer(self) -> None:
        """A `silent_configuration` station answers no GetConfiguration (a set-up's capability
        read) until a test releases `profile_answers`."""
        if self.quirks.silent_configuration:
            await self.profile_answers.wait()

    async def hold_clear_answer(self) -> None:
        """A `silent_clears` station does not answer a ClearChargingProfile (nor clear) until
        a test releases `profile_answers`."""
        if self.quirks.silent_clears:
            await self.profile_answers.wait()

    def _booted_now(self) -> None:
        self.boots += 1
        self.booted.set()
        self._changed.set()

    def _profiles_changing(self) -> None:
        if self.on_profiles_changing is not None:
            self.on_profiles_changing(self)

    def _profiles_changed(self) -> None:
        if self.on_profiles_changed is not None:
            self.on_profiles_changed(self)

    def run_deferred(self) -> None:
        """Do what an answer just sent promised (called from the handlers' `after` hooks)."""
        actions, self._deferred = self._deferred, []
        for action in actions:
            action()

    # ---- status -----------------------------------------------------------------------------

    def _derived_status(self, state: ConnectorState) -> str:
        """The connector's state in OCPP 1.6 words (2.0.1 splits it into a connector status
        and a charging state)."""
        if state.transaction is not None:
            if state.transaction.id_tag is None and state.ev is not None:
                return "Preparing"          # waiting for the driver's token
            if state.ev is None or state.ev.full:
                return "SuspendedEV"
            return "Charging" if state.draw_w > 0 else "SuspendedEVSE"
        if not state.operative:
            return "Unavailable"
        if state.ev is not None:
            return "Finishing" if state.finished_transactions else "Preparing"
        return "Available"

    def _refresh_status(self, connector_id: int, at: datetime | None = None) -> None:
        """A changed status notified, stamped `at` (the moment it changed; None: now)."""
        state = self.connectors[connector_id]
        status = self._derived_status(state)
        if status != state.status:
            state.status = status
            self._notify_status(connector_id, at)

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
        self._cable_plugged(connector_id)
        if not state.operative:
            return False
        if state.pending_remote_id_tag is not None:
            id_tag, state.pending_remote_id_tag = state.pending_remote_id_tag, None
            self._start_remote_pending(connector_id, id_tag)
            return True
        if id_tag is None:
            return False
        return await self.authorize_and_start(connector_id, id_tag)

    async def authorize_and_start(self, connector_id: int, id_tag: str) -> bool:
        protocol = self._protocol
        if protocol is not None and self.booted.is_set():
            try:
                if not await self._authorize(protocol, id_tag):
                    self._authorization_refused(connector_id)
                    return False
            except (OCPPError, asyncio.TimeoutError, ConnectionError) as error:
                # LocalAuthorizeOffline: the network failed us, not the driver
                log.info("%s: Authorize failed (%r), authorizing locally",
                         self.spec.station_id, error)
        self.start_transaction(connector_id, id_tag)
        return True

    async def unplug(self, connector_id: int) -> Transaction | None:
        """The car leaves; a running transaction stops with reason EVDisconnected."""
        state = self._connector(connector_id)
        tx = self.stop_transaction(connector_id, "EVDisconnected")
        state.ev = None
        state.finished_transactions.clear()
        self._refresh_status(connector_id)
        return tx

    def _transaction_ended(self, connector_id: int, tx: Transaction, at) -> None:
        """What follows any stop: the connector is free, its TxProfiles go (they live as long
        as their transaction), a scheduled Inoperative takes effect, the car stops drawing."""
        state = self.connectors[connector_id]
        tx.meter_stop_wh = int(state.register_wh)
        state.transaction = None
        state.finished_transactions.append(tx)
        self.profiles.end_transaction(connector_id)
        if state.unavailable_after_transaction:
            state.operative = False
            state.unavailable_after_transaction = False
        self._update_draws(at)

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

    # ---- reset ------------------------------------------------------------------------------

    def reboot(self, graceful: bool, stop_reason: str) -> None:
        """Stop every transaction (`stop_reason`), let the stops go out first when `graceful`,
        close the connection and boot again; a car still plugged in starts a new session."""
        self._spawn(self._reset(graceful, stop_reason))

    async def _reset(self, graceful: bool, stop_reason: str) -> None:
        resume = {}
        for cid, state in self.connectors.items():
            if state.transaction is not None:
                resume[cid] = state.transaction.id_tag
                self.stop_transaction(cid, stop_reason)
        if graceful and self.booted.is_set():
            try:   # a soft reset lets the stops go out first; a hard one sends them after boot
                await self.drained(timeout_s=self.spec.call_timeout_s)
            except asyncio.TimeoutError:
                pass
        if self.quirks.forget_profiles_on_reboot:
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

    # ---- what a protocol version fills in ---------------------------------------------------

    def _make_protocol(self, connection: WsConnection):
        """The `ocpp` ChargePoint that reads and answers the central system's calls."""
        raise NotImplementedError

    async def _boot(self, protocol) -> None:
        """BootNotification until Accepted, then `_booted_now()`."""
        raise NotImplementedError

    def _report_all_statuses(self) -> None:
        raise NotImplementedError

    def _notify_status(self, connector_id: int, at: datetime | None = None) -> None:
        raise NotImplementedError

    def _heartbeat_interval_s(self) -> int:
        raise NotImplementedError

    def _heartbeat_request(self):
        raise NotImplementedError

    def _message_attempts(self) -> tuple[int, float]:
        """(attempts, seconds between them) for a transaction message the CSMS refuses."""
        raise NotImplementedError

    async def _authorize(self, protocol, id_tag: str) -> bool:
        raise NotImplementedError

    def _cable_plugged(self, connector_id: int) -> None:
        """A car was just plugged in (2.0.1 may start its transaction here)."""

    def _authorization_refused(self, connector_id: int) -> None:
        """The central system refused the driver's token."""

    def _start_remote_pending(self, connector_id: int, id_tag: str) -> None:
        """A remote start waited for the cable, which is now in."""
        self.start_transaction(connector_id, id_tag)

    def start_transaction(self, connector_id: int, id_tag: str) -> Transaction:
        raise NotImplementedError

    def stop_transaction(self, connector_id: int, reason: str = "Local") -> Transaction | None:
        raise NotImplementedError

