"""A station's charging physics and metering: cars integrate their charging in simulated
time under the composite limit, and meters turn it into OCPP meter values."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from smartcharge.clock import format_ocpp_time
from smartcharge.sim.profiles import TxContext
from smartcharge.sim.spec import ConnectorState

PHASE_NAMES = ("L1", "L2", "L3")


class ChargingPhysics:
    """Mixin of the simulated station (version-neutral): needs `spec`, `clock`, `rng`,
    `connectors`, `profiles`, `_refresh_status`, `_last_physics`, `_next_sample`,
    `_wake_physics`, and from the protocol version `_sample_interval_s()` and
    `_enqueue_meter_values(connector_id, transaction, at, context)`."""

    def _tx_contexts(self) -> dict[int, TxContext | None]:
        return {cid: (s.transaction.context() if s.transaction else None)
                for cid, s in self.connectors.items()}

    def advance_to(self, now: datetime) -> None:
        """Integrate every car's charging up to `now`, splitting at profile changes, so a car
        never draws above a limit that came into force within the step."""
        last = self._last_physics or now
        drawn_at = None   # the moment the draws were last computed at here
        while last < now:
            change = self.profiles.next_change(last, self._tx_contexts())
            segment_end = now if change is None or change > now else change
            dt_s = (segment_end - last).total_seconds()
            for state in self.connectors.values():
                if state.transaction is not None and state.ev is not None:
                    drawn_w = state.ev.advance(dt_s, state.draw_w)
                    state.register_wh += drawn_w * dt_s / 3600.0
            last = drawn_at = segment_end
            self._update_draws(last)
        self._last_physics = max(last, self._last_physics or last)
        # computed at that moment already (nothing changed since): the same draws again, a
        # quarter of a station's draw computations per SetChargingProfile (s22-clstations)
        if drawn_at != self._last_physics:
            self._update_draws(self._last_physics)

    def _obeys_profiles(self) -> bool:
        """False: it draws what the car wants whatever profiles it holds (a quirk; 2.0.1:
        SmartChargingCtrlr.Enabled false)."""
        return not self.quirks.ignore_profiles

    def _update_draws(self, at: datetime) -> None:
        voltage_v = self.spec.voltage_v
        obey = self._obeys_profiles()
        offers: dict[int, float] = {}
        for cid, state in self.connectors.items():
            # a transaction nobody has authorized yet (2.0.1, TxStartPoint EVConnected) has
            # its power path open
            if (state.transaction is None or state.ev is None or not state.operative
                    or state.transaction.id_tag is None):
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
        # a state the draws change is stamped at the moment they changed, not the clock's now:
        # a sample due earlier and taken late advances to its moment, and what changed there
        # comes before it (stamps in seqNo order)
        for cid in self.connectors:
            self._refresh_status(cid, at)

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
            interval_s = self._sample_interval_s()
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
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the event fires, and this loop then never stops (seen as a hung
            # Fleet.stop() in the end-to-end tests).
            try:
                async with asyncio.timeout(real_s + 1e-4):
                    await self._wake_physics.wait()
            except TimeoutError:
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
        # every phase the connector has is metered: a single-phase car on a 3-phase connector
        # reads its current on L1 and 0 A on L2 and L3 (which tells the controller its phases)
        for index, phase in enumerate(PHASE_NAMES[:state.spec.phases]):
            amps = current_a if index < phases else 0.0
            sampled.append({"value": f"{amps:.2f}", "context": context,
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


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
