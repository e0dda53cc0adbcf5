"""A car that stops drawing by itself while offered power - its station says SuspendedEV (1.6
StatusNotification, 2.0.1 TransactionEvent's chargingState) right after Charging - is full, and
its power goes to the others at once, not after two meter samples at ~0 W (up to two meter
intervals: on the demo day with the demo's drivers 40 kWh of plan went to full cars).

First with the controller alone (tests/two_cars.py: the simulator's cars minute by minute),
then over real sockets with the simulated stations of both versions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smartcharge import events as ev
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, SessionDefaults, Site, Station
from smartcharge.sim.ev import SimEV
from smartcharge.site.controller import ControllerSettings
from smartcharge.site.topology import ConnectorRef
from tests.site_e2e import server_and_fleet, wait_until
from tests.two_cars import CAP_W, T0, charge_by_minute, start_session, two_stations


def _near_its_target() -> SimEV:
    # 11 kW, 2 kWh to its 80 % (the driver's wish; no taper below 80 %): full ~11 minutes in,
    # from 11 kW to 0 at once. Its driver says nothing: planned on the site's default need.
    return SimEV(capacity_wh=40_000.0, soc=0.75, target_soc=0.8,
                 max_power_w_by_phases={3: 11_000.0})


def _hungry() -> SimEV:
    # 22 kW, 80 kWh to go: takes all of the 20 kW cap the other leaves
    return SimEV(capacity_wh=100_000.0, soc=0.2, max_power_w_by_phases={3: 22_000.0})


def _short_minutes_after_full(out) -> tuple[int, list[float]]:
    full = max(m for m, w in enumerate(out.taken_w) if w > 0.0)   # the minute it filled up
    after = out.site_w[full + 1:]
    return sum(w < CAP_W - 500.0 for w in after), after


async def test_a_car_its_station_says_is_full_hands_its_power_on_within_a_minute():
    out = await charge_by_minute(two_stations("suspended-ev"), 40, _near_its_target(),
                                 _hungry(), settings=ControllerSettings(),
                                 charging_states=True)
    short, after = _short_minutes_after_full(out)
    # before: the full car held its minimum (4.14 kW) until a second sample read it at 0 W,
    # the site at 15.9 of its 20 kW for 5 minutes; now the minute after it filled up the
    # other car has the whole cap
    assert short == 0, after


async def test_without_the_stations_word_two_samples_still_tell_it():
    # the rule the stations' word shortens stays: a car read at ~0 W twice while offered its
    # minimum declines power
    out = await charge_by_minute(two_stations("suspended-ev-samples"), 40, _near_its_target(),
                                 _hungry(), settings=ControllerSettings())
    short, after = _short_minutes_after_full(out)
    assert 0 < short <= 10, after
    assert after[-1] >= CAP_W - 500.0


async def test_suspended_ev_before_the_car_drew_or_while_offered_nothing_declines_nothing():
    from smartcharge.clock import ManualClock
    from smartcharge.site.controller import SiteController
    clock = ManualClock(T0)
    controller = SiteController(two_stations("suspended-ev-start"), clock, ControllerSettings())
    ref = ConnectorRef("CP1", 1)
    start_session(controller, ref, 1)
    await controller.replan()
    assert (controller.allocated_now_w(ref) or 0.0) > 0.0
    # a car still starting up (no Charging said before): not full
    controller.on_event(ev.ChargingStateChanged("CP1", 1, 1, "SuspendedEV", T0))
    assert ref not in controller.declined_at
    # another transaction's word says nothing of this one
    controller.on_event(ev.ChargingStateChanged("CP1", 1, 7, "Charging", T0))
    controller.on_event(ev.ChargingStateChanged("CP1", 1, 7, "SuspendedEV", T0))
    assert ref not in controller.declined_at
    # Charging, then SuspendedEV while offered power: full
    controller.on_event(ev.ChargingStateChanged("CP1", 1, 1, "Charging", T0))
    controller.on_event(ev.ChargingStateChanged("CP1", 1, 1, "SuspendedEV", T0))
    assert ref in controller.declined_at


# ---- over real sockets ---------------------------------------------------------------------

E2E_T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
PASSWORD = "sim-password-0123"
BAY = ConnectorRef("CPF", 1)


def _site() -> Site:
    return Site(name="suspended ev",
                circuits=(Circuit("grid", None, limit_w=30_000.0),),
                stations=(Station("CPF", "grid", (Connector(1, max_current_a=16),),
                                  password=PASSWORD),),
                id_tags=frozenset({"DRIVER-1"}),
                session_defaults=SessionDefaults(energy_wh=60_000, dwell_s=8 * 3600))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_station_saying_suspended_ev_after_charging_frees_the_cars_power(tmp_path,
                                                                                version):
    clock = AcceleratedClock(E2E_T0, speed=600.0)
    # periodic samples once a simulated day: only the station's state can tell the car is full
    fleet_kw = {"ocpp_versions": {"CPF": version}, "meter_interval_s": 86_400}
    async with server_and_fleet(_site(), tmp_path, clock, fleet_kw=fleet_kw,
                                settings=ControllerSettings(stale_after_s=2 * 86_400.0)) \
            as (server, fleet):
        controller = server.controller
        await fleet.start(wait_booted_s=10)
        car = SimEV(capacity_wh=40_000.0, soc=0.5, max_power_w_by_phases={3: 11_000.0})
        assert await fleet.plug_in("CPF", 1, car, "DRIVER-1")
        # charging under a plan the station has had its settle time under
        await wait_until(lambda: controller.closed_loop.offered_minimum(BAY), 60,
                         "the car planned and its profile in force")
        # the driver's in-car limit: 400 Wh more, full in ~2 site minutes at 11 kW
        car.target_soc = car.soc + 0.01
        await wait_until(lambda: car.full, 60, "the car full")
        await wait_until(lambda: BAY in controller.declined_at, 30,
                         "the full car planned at 0")
        assert car.charged_wh > 0
        await wait_until(lambda: controller.plan is not None and
                         (controller.allocated_now_w(BAY) or 0.0) == 0.0, 30,
                         "its power handed on")


async def test_a_full_car_offered_power_again_declines_again_at_its_first_sample():
    # declined, a car is offered power again after declined_retry_s (it may want more by
    # then); a full one takes none, and its station has nothing new to say (it said
    # SuspendedEV and still is). It was taken for a car starting up: two samples at ~0 W
    # before it declined again - up to two meter intervals of its offer unused each retry
    # (demo day, the demo's drivers: 09:06-09:14 a full car offered 4-7 kW, a 9-minute dip
    # of the site's load). It has shown it is full: one sample says it again.
    # (its bay 11 kW, so the car drawing its 11 kW is never capped: the closed loop's cap or
    # taper line declines a car at one sample already)
    site = Site(name="suspended-ev-retry", circuits=(Circuit("grid", None, limit_w=CAP_W),),
                stations=(Station("CP1", "grid", (Connector(1, max_current_a=16.0),)),
                          Station("CP2", "grid", (Connector(1),))))
    out = await charge_by_minute(site, 100, _near_its_target(),
                                 _hungry(), settings=ControllerSettings(declined_retry_s=1200.0),
                                 charging_states=True, sample_offset_min=2)
    full = max(m for m, w in enumerate(out.taken_w) if w > 0.0)
    retried = [m for m in range(full + 1, len(out.unused_w)) if out.unused_w[m] > 0.0]
    first = [m for m in retried if m < retried[0] + 10]
    later = [m for m in retried if m >= retried[0] + 10]
    assert first and later, retried
    # offered and not taken from the retry until the first sample after it, not the second:
    # before, 7 minutes (the retry at a slot edge, 12:45; samples at 12:47 and 12:52)
    assert len(first) <= 2, retried
    # and capped at its draw there, so a later retry offers it its minimum only, not its
    # bay's 11 kW taken from the other car
    minimum_w = 6.0 * 230.0 * 3
    assert all(out.unused_w[m] <= minimum_w + 1.0 for m in later), \
        [(m, out.unused_w[m]) for m in later]
    # each later retry declined at its first sample too (one retry here until s37-pause; since
    # the rounding places a car's remainder below one slot at its minimum the car near its
    # target is offered it at the retry 20 minutes on as well: minutes 30, 60 and 90)
    episodes = []   # runs of consecutive minutes
    for m in later:
        if episodes and m == episodes[-1][-1] + 1:
            episodes[-1].append(m)
        else:
            episodes.append([m])
    assert all(len(episode) <= 2 for episode in episodes), retried
    assert out.site_w[-1] >= CAP_W - 500.0
