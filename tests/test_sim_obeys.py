"""A station's cars never draw above the composite limit in force — checked over random
profile stacks and random time steps, with the station's physics driven by a manual clock
(no network: the physics is pure; the messages just queue)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartcharge.clock import ManualClock
from smartcharge.sim.ev import SimEV
from smartcharge.sim.station import ConnectorSpec, SimStation, StationSpec

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
V = 230.0



periods = st.lists(st.tuples(st.integers(60, 3600), st.sampled_from([0, 6, 8, 10, 16, 25])),
                   min_size=0, max_size=5)


def absolute(pid, purpose, stack, first_limit, more, connector_unit="A"):
    starts = sorted({s for s, _ in more})
    limits = dict(more)
    schedule = [{"startPeriod": 0, "limit": first_limit}] + [
        {"startPeriod": s, "limit": limits[s]} for s in starts]
    return {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {"chargingRateUnit": connector_unit,
                                 "startSchedule": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                 "chargingSchedulePeriod": schedule}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx_first=st.sampled_from([6, 10, 16, 32]), tx_more=periods,
       default_first=st.sampled_from([8, 16, 32]), default_more=periods,
       steps=st.lists(st.integers(1, 900), min_size=1, max_size=20))
def test_draw_and_energy_stay_under_the_composite_limit(tx_first, tx_more, default_first,
                                                        default_more, steps):
    clock = ManualClock(T0)
    spec = StationSpec("OBEY", (ConnectorSpec(1), ConnectorSpec(2)))
    station = SimStation(spec, "ws://127.0.0.1:9/ocpp", clock)
    station._last_physics = T0
    station.connectors[1].ev = SimEV(capacity_wh=500_000, soc=0.1,
                                     max_power_w_by_phases={3: 22_000})
    station.start_transaction(1, "TAG")
    assert station.set_charging_profile(
        0, absolute(1, "TxDefaultProfile", 0, default_first, default_more)) == "Accepted"
    assert station.set_charging_profile(
        1, absolute(2, "TxProfile", 1, tx_first, tx_more)) == "Accepted"
    tx = station.connectors[1].transaction.context()
    for step_s in steps:
        before_wh = station.connectors[1].register_wh
        start = clock.moment
        clock.moment = start + timedelta(seconds=step_s)
        station.advance_to(clock.moment)
        # the energy of the step is at most the integral of the limit over it (1 s grid;
        # limits change only on whole seconds here)
        allowed_wh = sum(
            station.profiles.limit_w(1, start + timedelta(seconds=k), tx, voltage_v=V,
                                     phases_in_use=3) for k in range(step_s)) / 3600
        assert station.connectors[1].register_wh - before_wh <= allowed_wh + 1e-6
        limit_now_w = station.profiles.limit_w(1, clock.moment, tx, voltage_v=V,
                                               phases_in_use=3)
        assert station.connectors[1].draw_w <= limit_now_w + 1e-9
