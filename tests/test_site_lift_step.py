"""A capped car that takes its whole cap again is lifted by a step, not to its bay's maximum.

Lifted to the bay's maximum, a car held the whole bay until its next meter sample while it
could take only its on-board charger's share of it: on the demo day an 11 kW car capped at
7.5 kW was offered 22 kW for five minutes while the site was short (benchmarks/README.md,
"s23-headroom", "s24-lift"). Raised a step over what it draws, it gets what it shows it can
take, and more at each sample that shows it follows; the rest goes to the other cars.
"""

from datetime import UTC, datetime

import pytest

from smartcharge import events as ev
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site.controller import SiteController
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
BAY_MAX_W = 3 * 230 * 32.0          # 22 080 W


def _controller(cap_w: float) -> tuple[SiteController, AcceleratedClock]:
    site = Site(name="t", circuits=(Circuit("grid", None, limit_w=cap_w),),
                stations=tuple(Station(f"CP{i}", "grid", (Connector(1),)) for i in range(2)))
    clock = AcceleratedClock(T0, speed=1.0)
    controller = SiteController(site, clock)
    for i in range(2):
        controller.on_event(ev.StationBooted(f"CP{i}", clock.now(), True, "v", "m"))
        controller.on_event(ev.SessionStarted(f"CP{i}", 1, 100 + i, "TAG", 0.0, clock.now()))
    return controller, clock


def _sample(controller, clock, ref: ConnectorRef, power_w: float) -> None:
    # three-phase draw: the car's phases are known, its cap is not popped by learning them
    current_a = power_w / (3 * 230.0)
    controller.on_event(ev.MeterSampled(ref.station_id, 1, 100 + int(ref.station_id[2:]),
                                        clock.now(), "Sample.Periodic", power_w=power_w,
                                        current_a=(current_a,) * 3))


def _now_w(controller) -> dict[ConnectorRef, float]:
    now = controller.clock.now()
    return {ref: p.power_at(now) for ref, p in controller.plan.connectors.items()}


async def test_a_lifted_car_is_offered_a_step_over_its_draw_not_its_bay_maximum():
    controller, clock = _controller(cap_w=40_000.0)
    car, other = ConnectorRef("CP0", 1), ConnectorRef("CP1", 1)
    await controller.replan()
    # the other car takes all it is given, at every sample: never capped
    _sample(controller, clock, other, _now_w(controller)[other])
    # the car takes 7.36 kW of what it is given: capped at its draw + headroom
    _sample(controller, clock, car, 7_360.0)
    await controller.replan()
    headroom_w = controller.settings.ev_headroom_w
    assert _now_w(controller)[car] == pytest.approx(7_360.0 + headroom_w, abs=1.0)
    # it takes its whole cap: it may want more (an 11 kW car held under 7.5 kW), lifted ...
    _sample(controller, clock, car, 7_360.0 + headroom_w)
    assert "ev-ramp:CP0/1" in controller._reasons
    await controller.replan()
    lifted = _now_w(controller)
    # ... by a step over what it drew, not to the 17.9 kW the site has left (its bay: 22 kW)
    assert 7_360.0 + headroom_w + 1_000.0 < lifted[car] < 12_000.0
    assert lifted[other] == pytest.approx(BAY_MAX_W, abs=1.0)
    # an 11 kW car: it takes 11 kW of the step and is held there (+ headroom)
    _sample(controller, clock, car, 11_000.0)
    await controller.replan()
    assert _now_w(controller)[car] <= 11_000.0 + headroom_w + controller.settings.ev_follow_w


async def test_a_car_that_follows_every_step_reaches_its_bay_maximum_within_a_few_samples():
    controller, clock = _controller(cap_w=60_000.0)
    car = ConnectorRef("CP0", 1)
    await controller.replan()
    _sample(controller, clock, car, 4_000.0)
    await controller.replan()
    samples = 0
    while _now_w(controller)[car] < BAY_MAX_W - 1.0:
        offered_w = _now_w(controller)[car]
        _sample(controller, clock, car, offered_w)   # takes all it is offered
        await controller.replan()
        samples += 1
        assert _now_w(controller)[car] > offered_w + 1_000.0   # grows at every sample
        assert samples <= 5      # from 4 kW: 6.2, 9.3, 14, 21, 22 kW
    assert car not in controller.closed_loop.ev_cap_w   # lifted for good at the bay maximum
