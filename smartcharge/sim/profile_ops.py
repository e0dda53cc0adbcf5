"""What a station does with charging profiles, whatever OCPP version delivered them: install one
(the quirks of a misbehaving station apply here), clear some, compute the composite schedule,
and change a connector's availability. The versions parse and answer; this mixin acts."""

from __future__ import annotations

import logging
from datetime import datetime

from smartcharge.sim.profiles import Profile, ProfileRejected, Schedule, TxContext

log = logging.getLogger("smartcharge.sim.station")


class ProfileOperations:
    """Mixin of StationCore: needs `clock`, `spec`, `quirks`, `connectors`, `profiles`,
    `advance_to`, `_update_draws`, `_wake_physics`, `_profiles_changing`, `_profiles_changed`,
    `_refresh_status`."""

    def tx_context(self, connector_id: int) -> TxContext | None:
        state = self.connectors.get(connector_id)
        return state.transaction.context() if state and state.transaction else None

    def install_profile(self, profile: Profile, *, replace_same_level: bool = True) -> None:
        """Install `profile` now, or raise ProfileRejected (the quirks of this station first).
        `replace_same_level`: 1.6 replaces a profile of the same connector, purpose and stack
        level; 2.0.1 has rejected such a profile before it gets here (K01.FR.39)."""
        now = self.clock.now()
        if self.quirks.reject_zero_limit and any(p.limit == 0 for p in profile.schedule.periods):
            raise ProfileRejected("this station does not take a limit of 0")
        if self.quirks.reject_zero_defaults and profile.purpose == "TxDefaultProfile" and all(
                p.limit == 0 for p in profile.schedule.periods):
            raise ProfileRejected("this station takes no default of 0")
        if self.quirks.reject_station_max and profile.purpose == "ChargePointMaxProfile":
            raise ProfileRejected("this station takes no ChargePointMaxProfile")
        self.advance_to(now)
        self._profiles_changing()
        self.profiles.install(profile, self.tx_context(profile.connector_id),
                              replace_same_level=replace_same_level)
        self._update_draws(now)
        self._wake_physics.set()
        self._profiles_changed()

    def clear_charging_profile(self, **criteria) -> int:
        self.advance_to(self.clock.now())
        self._profiles_changing()
        removed = self.profiles.clear(**criteria)
        self._update_draws(self.clock.now())
        self._wake_physics.set()
        self._profiles_changed()
        return removed

    def composite(self, connector_id: int, duration_s: int,
                  unit: str | None) -> tuple[datetime, Schedule] | None:
        """(start, composite schedule) for GetCompositeSchedule, or None where the station
        rejects the request (unknown connector, unsupported unit)."""
        if connector_id != 0 and connector_id not in self.connectors:
            return None
        if self.quirks.refuse_composite:
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
            tx = self.tx_context(connector_id)
            if tx is not None and tx.started_at > now:
                # the schedule starts on a whole second: a transaction begun within that
                # second counts from it, or its Relative profiles would seem not yet begun
                tx = TxContext(tx.transaction_id, now)
            fallback_w = state.spec.max_current_a * self.spec.voltage_v * phases
        return now, self.profiles.composite_schedule(
            connector_id, now, duration_s, unit, tx, voltage_v=self.spec.voltage_v,
            phases=phases, fallback_w=fallback_w)

    def set_operative(self, connector_id: int, operative: bool) -> bool:
        """ChangeAvailability on one connector or (0) all; True when a running transaction
        makes it wait for the transaction's end (Scheduled)."""
        targets = list(self.connectors) if connector_id == 0 else [connector_id]
        scheduled = False
        for cid in targets:
            state = self.connectors[cid]
            if not operative and state.transaction is not None:
                state.unavailable_after_transaction = True
                scheduled = True
                continue
            state.unavailable_after_transaction = False
            state.operative = operative
            self._refresh_status(cid)
        return scheduled
