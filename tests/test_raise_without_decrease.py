"""A raise that needs nobody's decrease goes out in force at once, not a settle time later.

A car left CP1/1 and the next car plugged in there while CP1/2's car went on (~18-22 kW of a
40 kW grid: room for the new one). The new car drew 0 W (the 0 W default kept under the
car before, `idle.py`) until its TxProfile came into force, and every raise was held the settle
time and the clocks' margin after it was sent (`edges.held`) - 10 s here, 20 s and more with
the re-plans' waits - though no station had anything to lower for it. The hold is for the
cars under decreases to follow them; with none to follow (none in the round under the raise's
limited nodes, none acknowledged or at a slot edge within the hold before), the raise is in
force when it is installed. Counted from the station's own profile store: the moment its
TxProfile lets the car draw, against the moment it was installed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.site.topology import ConnectorRef
from tests.conftest import API_TOKEN, ID_TAG, PASSWORD
from tests.site_e2e import server_and_fleet, wait_until

TX_PROFILE = "TxProfile"


def _site() -> Site:
    return Site(name="room for both", circuits=(Circuit("grid", None, limit_w=40_000.0),),
                stations=(Station("CP1", "grid", (Connector(1, max_current_a=32),
                                                  Connector(2, max_current_a=32)),
                                  password=PASSWORD),),
                id_tags=frozenset({ID_TAG}), operator_tokens=frozenset({API_TOKEN}))


def _car() -> SimEV:
    return SimEV(capacity_wh=80_000, soc=0.2, max_power_w_by_phases={1: 7_400.0, 3: 22_000.0})


def first_power_at(profile):
    """When a profile's schedule first allows more than 0 (its start and the period's)."""
    start = profile.schedule.start or profile.installed_at
    for period in profile.schedule.periods:
        if period.limit > 0:
            return start + timedelta(seconds=period.start_s)
    return None


async def test_the_next_car_on_a_connector_draws_when_its_profile_is_installed(tmp_path):
    # 10x, mid-slot: the test's minute of site time meets no slot edge (where schedules step)
    start = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)
    clock = AcceleratedClock(start, speed=10.0)
    async with server_and_fleet(_site(), tmp_path, clock,
                                fleet_kw={"meter_interval_s": 10}) as (server, fleet):
        await fleet.start(wait_booted_s=30)
        station = fleet.station("CP1")
        assert await fleet.plug_in("CP1", 1, _car(), ID_TAG)
        await wait_until(lambda: station.connectors[1].transaction.transaction_id, 30,
                         "the first car's transaction")
        first = station.connectors[1].transaction.transaction_id
        # its TxProfile, and the 0 W default under it (idle.py): what the next car meets
        await wait_until(lambda: any(p.purpose == TX_PROFILE and p.transaction_id == first
                                     for p in station.profiles.profiles), 30,
                         "the first car's TxProfile")
        assert await fleet.plug_in("CP1", 2, _car(), ID_TAG)
        await wait_until(lambda: fleet.draw_w("CP1", 1) > 15_000
                         and fleet.draw_w("CP1", 2) > 15_000, 60, "both cars charging")
        # minutes later, as cars come: every decrease of their arrival has settled
        hold_s = server.dispatcher.raise_delay_s()
        await wait_until(lambda: clock.now() > timedelta(seconds=hold_s + 1) + max(
            p.installed_at for p in station.profiles.profiles), 30, "the decreases settled")
        await fleet.unplug("CP1", 1)
        left = ConnectorRef("CP1", 1)
        await wait_until(lambda: left not in server.controller.state.sessions, 30,
                         "the first car's session closed")
        plugged = clock.now()
        assert await fleet.plug_in("CP1", 1, _car(), ID_TAG)
        await wait_until(lambda: station.connectors[1].transaction.transaction_id, 30,
                         "the new car's transaction")
        tx = station.connectors[1].transaction
        await wait_until(lambda: any(
            p.purpose == TX_PROFILE and p.connector_id == 1 and p.installed_at >= plugged
            and p.transaction_id == tx.transaction_id and first_power_at(p) is not None
            for p in station.profiles.profiles), 20, "the new car's TxProfile")
        [profile] = [p for p in station.profiles.profiles if p.purpose == TX_PROFILE
                     and p.connector_id == 1 and p.installed_at >= plugged
                     and p.transaction_id == tx.transaction_id][:1]
        held_s = (first_power_at(profile) - profile.installed_at).total_seconds()
        # nothing needed lowering for it: in force when installed (it was held ~10 s)
        assert held_s <= 0, (held_s, profile.schedule)
        await wait_until(lambda: fleet.draw_w("CP1", 1) > 0, 10, "the new car drawing")
        assert fleet.site_draw_w() <= 40_000 + 1.0


def test_a_drop_within_the_hold_is_found_a_rise_is_not():
    from smartcharge.site.settling import dropped_within

    t = datetime(2026, 1, 1, 12, tzinfo=UTC)
    step = [(t, 10_000.0), (t + timedelta(seconds=30), 4_000.0),
            (t + timedelta(seconds=60), 9_000.0)]
    assert dropped_within(step, t + timedelta(seconds=25), t + timedelta(seconds=35))
    assert not dropped_within(step, t + timedelta(seconds=31), t + timedelta(seconds=65))
    assert not dropped_within(step, t, t + timedelta(seconds=29))   # not yet
    assert not dropped_within([], t, t + timedelta(seconds=60))
