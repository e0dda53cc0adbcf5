"""The clairvoyant bound that honours the minimum rate minute by minute (benchmarks/quality_milp.py):
a car runs at 0 or is offered at least its 6 A, every limit holds what is offered each minute.
On small days where the LP bounds promise energy no lawful controller can deliver, it must not,
and it must stay an upper bound on a lawful controller's energy."""

import dataclasses
from datetime import timedelta

from benchmarks.quality_bound import taper_aware_optimum_wh
from benchmarks.quality_days import START, Day, offline_optimum_wh
from benchmarks.quality_milp import min_rate_optimum
from smartcharge.config import load_site
from smartcharge.demo.arguments import default_site_path
from smartcharge.demo.scenario import Visit
from smartcharge.sim.ev import SimEV

from tests.test_benchmark_quality_bound_min import lawful_best_wh, two_car_day

MIN_W = 6 * 3 * 230.0          # the demo site's 6 A on three phases at 230 V


def two_small_cars_day(cap_w: float) -> Day:
    """Two hungry cars whose chargers take 5 kW on three phases, on two 11 kW bays under a
    grid cap `cap_w`, for an hour (both far from their taper)."""
    site = load_site(default_site_path())
    root = dataclasses.replace(site.circuits[0], limit_w=cap_w)
    site = dataclasses.replace(site, circuits=(root,) + tuple(site.circuits[1:]))
    bays = [(s.station_id, s.connectors[0].connector_id) for s in site.stations
            if s.connectors[0].phases == 3][:2]
    end = START + timedelta(hours=1)
    visits = []
    for k, (station, connector) in enumerate(bays):
        car = SimEV(capacity_wh=60_000.0, soc=0.1, target_soc=0.8,
                    max_power_w_by_phases={1: 5_000.0, 3: 5_000.0})
        visits.append(Visit(station, connector, START, end, car, f"tag{k}", car.energy_need_wh,
                            True))
    return Day("two-small-cars", site, visits, START, 1.0, None)


def test_two_cars_whose_minimums_do_not_fit_together_charge_one_at_a_time():
    """8 kW of cap, two cars of 5 kW each with a 4 140 W minimum: both on would hold 8 280 W,
    so at any minute one charges, at its 5 kW: 5 000 Wh in the hour. The LP bounds share the
    8 kW (4 kW each, under the minimum) and promise 8 000 Wh."""
    day = two_small_cars_day(8_000.0)
    assert abs(offline_optimum_wh(day) - 8_000.0) < 1.0
    assert abs(taper_aware_optimum_wh(day) - 8_000.0) < 1.0
    bound = min_rate_optimum(day)
    assert abs(bound.bound_wh - 5_000.0) < 2.0, bound
    assert bound.incumbent_lawful and abs(bound.incumbent_wh - 5_000.0) < 2.0, bound
    assert bound.lp_wh > 7_999.0, bound          # round 0, the minute LP, has no minimum


def test_a_cap_under_every_minimum_delivers_nothing():
    """A 4 kW cap is under one car's 4 140 W minimum: no lawful controller charges at all."""
    bound = min_rate_optimum(two_small_cars_day(4_000.0))
    assert bound.bound_wh < 1.0 and bound.incumbent_lawful, bound


def test_a_tapering_cars_minimum_is_priced_and_the_bound_still_holds():
    """session 30's day: B in deep taper (3 575 W falling, under its 4 140 W minimum) beside a
    hungry A under a 14 kW cap. The 5-min LP with the minimum's price in bands says 12 791 Wh;
    a lawful minute-by-minute controller (the test's rule) takes 11 926. The MILP's dual bound
    (one round of binaries, the root node only: deterministic) lies between, well under the
    LP's, and its incumbent is a lawful schedule no better than the bound."""
    day, car_a, car_b = two_car_day()
    lawful = lawful_best_wh(car_a, car_b)
    banded = taper_aware_optimum_wh(day, min_rates=True)
    bound = min_rate_optimum(day, rounds=1, node_limit=1, time_limit_s=600.0)
    assert lawful <= bound.bound_wh + 1e-6, (lawful, bound)
    assert bound.bound_wh < banded - 300.0, (banded, bound)
    assert bound.incumbent_wh <= bound.bound_wh + 1e-6, bound


def test_the_lagrangian_bound_alone_sees_minimums_that_do_not_fit_together():
    """No whole-day MILP rounds: the minute LP's duals and one small MILP per minute give the
    same 5 000 Wh on the two small cars (the needs do not bind, so nothing ties the minutes)."""
    bound = min_rate_optimum(two_small_cars_day(8_000.0), rounds=0)
    assert abs(bound.lagrangian_wh - 5_000.0) < 2.0, bound
    assert abs(bound.bound_wh - 5_000.0) < 2.0, bound
