"""The quality benchmark's taper-aware bound is an upper bound on what a simulated car can take,
and tighter than the bound that ignores taper (benchmarks/quality_bound.py)."""

import copy
from datetime import timedelta

from benchmarks.quality_bound import taper_aware_optimum_wh
from benchmarks.quality_days import START, Day, offline_optimum_wh
from smartcharge.config import load_site
from smartcharge.demo.arguments import default_site_path
from smartcharge.demo.scenario import Visit
from smartcharge.sim.ev import SimEV


def one_car_day(hours: float) -> tuple[Day, SimEV]:
    """A 11 kW car at 60 % of 40 kWh wanting 100 %, alone on the demo site for `hours`."""
    site = load_site(default_site_path())
    station = next(s for s in site.stations if any(c.phases == 3 for c in s.connectors))
    connector = next(c for c in station.connectors if c.phases == 3)
    car = SimEV(capacity_wh=40_000.0, soc=0.6, target_soc=1.0,
                max_power_w_by_phases={1: 7_400.0, 3: 11_000.0})
    visit = Visit(station.station_id, connector.connector_id, START,
                  START + timedelta(hours=hours), car, "tag", car.energy_need_wh, True)
    return Day("one-car", site, [visit], START, hours, None), copy.deepcopy(car)


def took_wh(car: SimEV, hours: float) -> float:
    """Offered its maximum all along, in the simulator's 60 s steps."""
    before = car.charged_wh
    for _ in range(int(hours * 60)):
        car.advance(60.0, 11_000.0)
    return car.charged_wh - before


def test_the_taper_aware_bound_holds_what_the_car_takes_and_is_tighter():
    for hours in (1.0, 1.5):          # the car is not full by then
        day, car = one_car_day(hours)
        taken = took_wh(car, hours)
        bound = taper_aware_optimum_wh(day)
        plain = offline_optimum_wh(day)
        assert taken <= bound + 1e-6, (hours, taken, bound)
        assert bound < plain - 200, (hours, bound, plain)       # taper costs energy here
        assert bound - taken < 0.03 * taken, (hours, taken, bound)   # and the bound is close
