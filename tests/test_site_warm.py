"""The controller keeps its solver model from one plan to the next (site/warm_plans.py): every
re-plan - a car arrives, one leaves, the operator lowers the cap, a DR event starts - is the same
optimum as a plan made from scratch from the same picture, and lawful; one solve at a time uses
the kept model."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import optimizer
from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site import planner
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.topology import ConnectorRef
from smartcharge.site.warm_plans import WarmPlans

T0 = datetime(2026, 1, 5, 8, 30, 7, tzinfo=UTC)
STATIONS = 12
PHASES = ("L1", "L2", "L3")


def _site() -> Site:
    # per-phase limits on the feeders: every plan is HiGHS's (the flow does not apply)
    return Site(name="warm",
                circuits=(Circuit("grid", None, limit_w=120_000.0),
                          Circuit("F0", "grid", limit_a=63), Circuit("F1", "grid", limit_a=63)),
                stations=tuple(Station(f"CP{s}", f"F{s % 2}", (
                    Connector(1), Connector(2, phases=1, phase=PHASES[s % 3])))
                    for s in range(STATIONS)))


def _start(controller, clock, ref: ConnectorRef, tx: int, rng) -> None:
    controller.on_event(ev.SessionStarted(ref.station_id, ref.connector_id, tx, "TAG", 0.0,
                                          clock.now()))
    controller.state.set_need(tx, requested_wh=float(rng.uniform(5_000, 40_000)),
                              departure=clock.now() + timedelta(hours=float(rng.uniform(1, 8))))


def _power(plan, built) -> np.ndarray:
    return np.array([plan.connectors[s.ref].power_w - s.floor_w for s in built.sessions])


async def _replan_like_cold(controller, clock, expect: str) -> None:
    """The controller's (warm) re-plan against a cold plan of the same picture."""
    cold = planner.make_plan(controller.topology, controller.plan_inputs(clock.now()))
    await controller.replan()
    assert controller.warm.last == expect
    warm = controller.stats.last_solver
    # both solved by HiGHS (the portfolio guard may then hand either plan's later slots to a
    # baseline that delivers more after rounding: "kept+llf")
    assert warm["relaxation_objective"] is not None and controller.stats.last_status != "fallback"
    assert warm["relaxation_objective"] == pytest.approx(
        cold.solver["relaxation_objective"], rel=1e-9, abs=1e-6)
    assert warm["relaxation_weighted_wh"] == pytest.approx(
        cold.solver["relaxation_weighted_wh"], rel=1e-9, abs=1e-6)
    # two optima of one LP round to plans a little apart (minimum rates; optimizer/warm.py)
    assert warm["weighted_wh"] == pytest.approx(cold.solver["weighted_wh"], rel=1e-2)
    assert controller.stats.violations == 0
    problem = cold.built.problem
    assert optimizer.check(problem, _power(controller.plan, cold.built)) == []
    assert optimizer.check(problem, _power(cold.plan, cold.built)) == []


async def _planned_cars(clock, n_cars: int, first_tx: int, seed: int):
    """A HiGHS-planned controller with cars on CP0..CP{n_cars - 1} (connector 1) planned from
    scratch; returns it, the refs (one more, free, for a car to come) and the generator."""
    controller = SiteController(_site(), clock, ControllerSettings(backend="highs"))
    controller.warm.min_sessions = 0
    rng = np.random.default_rng(seed)
    refs = [ConnectorRef(f"CP{s}", 1) for s in range(n_cars + 1)]
    for tx, ref in enumerate(refs[:-1]):
        controller.on_event(ev.StationBooted(ref.station_id, T0, True, "v", "m"))
        _start(controller, clock, ref, first_tx + tx, rng)
    await _replan_like_cold(controller, clock, "cold")
    return controller, refs, rng


@pytest.mark.parametrize("infeasible_warm", [False, True])
async def test_every_warm_replan_is_the_cold_optimum(infeasible_warm):
    # infeasible_warm: the kept model also where the last plan breaks a new limit (a cap or a
    # DR event below it), which warm.py builds from scratch by default (slower warm, measured)
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock)
    controller.warm.min_sessions = 0     # a small site, to see every path of the kept model
    controller.warm.start.infeasible_warm = infeasible_warm
    rng = np.random.default_rng(7)
    refs = [ConnectorRef(f"CP{s}", c) for s in range(STATIONS) for c in (1, 2)]
    for s in range(STATIONS):
        controller.on_event(ev.StationBooted(f"CP{s}", T0, True, "v", "m"))
    for tx, ref in enumerate(refs[:-2]):
        _start(controller, clock, ref, 100 + tx, rng)
    await _replan_like_cold(controller, clock, "cold")            # the first plan
    _start(controller, clock, refs[-2], 200, rng)                 # a car arrives
    await _replan_like_cold(controller, clock, "warm")
    controller.on_event(ev.SessionStopped(refs[3].station_id, refs[3].connector_id, 103,
                                          clock.now(), 0.0, "EVDisconnected"))
    # a car leaves: the last plan still keeps every limit (only the car's own columns changed)
    await _replan_like_cold(controller, clock, "warm")
    # a limit below the last plan: built from scratch (faster than the kept model: warm.py)
    changed = "warm" if infeasible_warm else "cold"
    controller.limits.set_operator_cap(60_000.0, since=clock.now())
    await _replan_like_cold(controller, clock, changed)           # the operator's cap drops
    # (ending a limit lead after a slot boundary: no new slot edge, which warm.py would build
    # from scratch for - another time grid)
    end = datetime(2026, 1, 5, 9, 46, tzinfo=UTC)
    controller.limits.add_event(DemandResponseEvent("dr-1", clock.now(), end, limit_w=30_000.0))
    await _replan_like_cold(controller, clock, changed)           # a DR event starts now
    _start(controller, clock, refs[-1], 201, rng)                 # and another car arrives
    await _replan_like_cold(controller, clock, "warm")


async def test_a_minute_later_the_kept_model_is_changed_too():
    # A minute later the first slot is shorter (every car's energy-row entry in it changes) and
    # the meters moved (every car needs less): the kept model is changed into that LP too
    # (optimizer/warm.py), and the optimum is the cold one's
    clock = ManualClock(T0)
    controller, refs, rng = await _planned_cars(clock, 5, 300, seed=3)
    clock.advance(60)
    for tx, ref in enumerate(refs[:-1]):
        power_w = controller.allocated_now_w(ref)
        controller.on_event(ev.MeterSampled(ref.station_id, 1, 300 + tx, clock.now(),
                                            "Sample.Periodic", energy_register_wh=power_w / 60,
                                            power_w=power_w, received_at=clock.now()))
    controller.on_event(ev.StationBooted(refs[-1].station_id, T0, True, "v", "m"))
    _start(controller, clock, refs[-1], 310, rng)
    await _replan_like_cold(controller, clock, "warm")


def test_one_solve_at_a_time_uses_the_kept_model():
    warm = WarmPlans()
    warm.min_sessions = 0
    with warm.use([]) as first:
        assert first is warm.start
        with warm.use([]) as second:      # another plan while one is under way: from scratch
            assert second is None
        assert warm.last == "busy"
    with warm.use([]) as again:
        assert again is warm.start


def test_ids_are_per_session():
    warm = WarmPlans()
    a, b = ConnectorRef("CP0", 1), ConnectorRef("CP1", 1)

    class S:   # the two fields WarmPlans reads of a planner.SessionInput
        def __init__(self, ref, tx):
            self.ref, self.transaction_id = ref, tx

    first = warm.ids([S(a, 1), S(b, 2)])
    assert list(warm.ids([S(b, 2), S(a, 1)])) == [first[1], first[0]]
    again = warm.ids([S(a, 3)])           # another car on the same connector: a new id
    assert again[0] not in first


async def test_the_time_grid_moves():
    # Slots are keyed by their end (site/warm_plans.py): a car leaving within the next two slots
    # puts a new edge into the grid (one more slot, the one it splits shorter) and the kept model
    # is changed into that LP; once the first slot has passed, it is built from scratch
    clock = ManualClock(T0)
    controller, refs, rng = await _planned_cars(clock, 7, 400, seed=5)
    slots = len(controller.plan.connectors[refs[0]].slot_starts)
    controller.on_event(ev.StationBooted(refs[-1].station_id, T0, True, "v", "m"))
    _start(controller, clock, refs[-1], 410, rng)
    controller.state.set_need(410, departure=clock.now() + timedelta(minutes=20))
    await _replan_like_cold(controller, clock, "warm")
    assert len(controller.plan.connectors[refs[0]].slot_starts) == slots + 1   # the new edge
    clock.advance(15 * 60)                       # past the first slot's end (08:45)
    await _replan_like_cold(controller, clock, "cold")


def test_slot_ids_are_per_slot_end():
    warm = WarmPlans()
    ends = [T0 + timedelta(minutes=m) for m in (15, 30, 45)]
    first = warm.slot_ids(ends)
    split = warm.slot_ids([ends[0], T0 + timedelta(minutes=20), *ends[1:]])
    assert list(split[[0, 2, 3]]) == list(first) and split[1] not in first


async def test_a_small_site_is_planned_from_scratch():
    # below MIN_SESSIONS the kept model cost more than it saved (measured at 100 connectors)
    clock = ManualClock(T0)
    controller = SiteController(_site(), clock)
    rng = np.random.default_rng(9)
    for s in range(3):
        controller.on_event(ev.StationBooted(f"CP{s}", T0, True, "v", "m"))
        _start(controller, clock, ConnectorRef(f"CP{s}", 1), 500 + s, rng)
    await controller.replan()
    await controller.replan()
    assert controller.warm.last == "small"
