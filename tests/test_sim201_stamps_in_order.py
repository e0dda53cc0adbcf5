"""A simulated 2.0.1 station stamps its TransactionEvents in the order of their seqNo.

Its physics loop wakes late on a loaded machine (at 1200x, 8 ms of real time is 10 site
seconds) and takes a sample due earlier at the moment it was due: it advances the cars to that
moment, then samples. A car that starts drawing at that moment (a limit rising in its profile)
changes the connector's state - and the ChargingStateChanged event was stamped with the clock's
now, 10 s after the sample that followed it with the next seqNo. tests/test_sim201_station.py's
offline replay test read the station's own stamps out of order (1 of 3 full runs, session 34).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.clock import ManualClock
from smartcharge.sim.ev import SimEV
from smartcharge.sim.spec import ConnectorSpec, StationSpec
from smartcharge.sim.v201.station import SimStation201

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)


def test_a_state_change_found_at_a_late_sample_is_stamped_at_that_sample():
    clock = ManualClock(T0)
    station = SimStation201(StationSpec("STAMPS", (ConnectorSpec(1),), ocpp_version="2.0.1"),
                            "ws://127.0.0.1:9/ocpp", clock)
    station._last_physics = T0
    station.connectors[1].ev = SimEV(capacity_wh=500_000, soc=0.1,
                                     max_power_w_by_phases={3: 22_000})
    tx = station.start_transaction(1, "TAG")
    # 0 A for the first minute, then 16 A: the car starts drawing at T0 + 60 s
    status, _ = station.set_charging_profile(1, {
        "id": 1, "stack_level": 1, "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Absolute", "transaction_id": tx.transaction_id,
        "charging_schedule": [{"id": 1, "charging_rate_unit": "A",
                               "start_schedule": "2026-01-01T08:00:00Z",
                               "charging_schedule_period": [{"start_period": 0, "limit": 0},
                                                            {"start_period": 60, "limit": 16}]}]})
    assert status == "Accepted", station.rejections
    assert station.connectors[1].status == "SuspendedEVSE"
    # the physics loop wakes 10 s late for the sample due at T0 + 60 s (its branch for a due
    # sample: the cars advanced to the moment it was due, then sampled at it)
    due = T0 + timedelta(seconds=60)
    clock.moment = due + timedelta(seconds=10)
    station.advance_to(due)
    station.sample_all(due)
    assert station.connectors[1].status == "Charging"
    events = [item.build() for item in station.outbox.queued()
              if item.action == "TransactionEvent"]
    stamped = [(e.seq_no, e.trigger_reason, e.timestamp) for e in events]
    assert [e.seq_no for e in events] == sorted(e.seq_no for e in events), stamped
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events), stamped
    changed = [e for e in events if e.trigger_reason == "ChargingStateChanged"]
    assert changed[-1].timestamp == "2026-01-01T08:01:00Z", stamped
