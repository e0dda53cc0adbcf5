"""The simulated station computes its connectors' draws once per moment it reaches: a
SetChargingProfile (and every wake of its physics) advanced the cars and then computed the draws
at the same moment a second time - the same inputs, the same result, ~a quarter of the
station's draw computations in a DR event (s22-clstations, the benchmark's station processes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.clock import ManualClock
from smartcharge.sim.ev import SimEV
from smartcharge.sim.station import ConnectorSpec, SimStation, StationSpec

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _station() -> tuple[SimStation, ManualClock]:
    clock = ManualClock(T0)
    station = SimStation(StationSpec("ONCE", (ConnectorSpec(1), ConnectorSpec(2))),
                         "ws://127.0.0.1:9/ocpp", clock)
    station._last_physics = T0
    station.connectors[1].ev = SimEV(capacity_wh=500_000, soc=0.1,
                                     max_power_w_by_phases={3: 22_000})
    station.start_transaction(1, "TAG")
    return station, clock


def _counting(station: SimStation) -> list[datetime]:
    moments: list[datetime] = []
    computed = station._update_draws

    def update_draws(at: datetime) -> None:
        moments.append(at)
        computed(at)
    station._update_draws = update_draws
    return moments


def test_advancing_computes_the_draws_once_per_moment():
    station, clock = _station()
    moments = _counting(station)
    clock.moment = T0 + timedelta(seconds=90)
    station.advance_to(clock.moment)
    assert moments == [clock.moment]
    # a moment already reached: the draws at it once more (a profile may have changed them)
    station.advance_to(clock.moment)
    assert moments == [clock.moment, clock.moment]


def test_a_profile_change_within_the_step_still_splits_it():
    station, clock = _station()
    assert station.set_charging_profile(1, {
        "chargingProfileId": 1, "stackLevel": 1, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": "2026-01-01T12:00:00Z",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16},
                                                        {"startPeriod": 60, "limit": 8}]}},
    ) == "Accepted"
    moments = _counting(station)
    clock.moment = T0 + timedelta(seconds=120)
    station.advance_to(clock.moment)
    assert moments == [T0 + timedelta(seconds=60), clock.moment]
    # 60 s at 16 A and 60 s at 8 A, three phases at 230 V
    assert abs(station.connectors[1].register_wh - (16 + 8) * 230 * 3 * 60 / 3600) < 1e-6
