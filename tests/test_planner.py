"""The planner is pure (issue 10): a picture of the site taken once -> the same problem and the
same plan every time, no event loop, no I/O; the live state moving on does not touch a picture
already taken; and the controller's re-plan is that planner run off the loop."""

import ast
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from smartcharge import events as ev
from smartcharge.clock import AcceleratedClock
from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site import plan_inputs, planner
from smartcharge.site.controller import SiteController
from smartcharge.site.limits import DemandResponseEvent
from smartcharge.site.topology import ConnectorRef

T0 = datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC)
PLANNER = Path(__file__).resolve().parent.parent / "smartcharge" / "site" / "planner.py"


def _controller(stations=6):
    site = Site(name="pure",
                circuits=(Circuit("grid", None, limit_w=40_000.0),
                          Circuit("feeder", "grid", limit_a=40)),
                stations=tuple(Station(f"CP{i}", "feeder" if i % 2 else "grid",
                                       (Connector(1), Connector(2, phases=1)))
                               for i in range(stations)))
    clock = AcceleratedClock(T0, speed=1.0)
    controller = SiteController(site, clock)
    for i in range(stations):
        controller.on_event(ev.StationBooted(f"CP{i}", T0, True, "v", "m"))
        controller.on_event(ev.SessionStarted(f"CP{i}", 1, 100 + i, "TAG", 0.0, T0))
    controller.on_event(ev.StationDisconnected("CP0", T0, "closed"))   # a fixed load
    controller.limits.add_event(DemandResponseEvent(
        "dr-1", T0 + timedelta(hours=1), T0 + timedelta(hours=2), limit_w=20_000.0))
    return controller


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def test_planner_imports_no_loop_no_io():
    found = _imports(PLANNER)
    banned = {"asyncio", "aiohttp", "sqlite3", "socket", "smartcharge.store",
              "smartcharge.site.controller", "smartcharge.site.dispatch"}
    assert not found & banned, found & banned
    assert not any(m.startswith(("smartcharge.ocpp", "smartcharge.store", "smartcharge.api"))
                   for m in found)


def test_same_picture_same_problem_and_plan_without_a_loop():
    controller = _controller()
    inputs = controller.plan_inputs(T0)
    first = planner.make_plan(controller.topology, inputs)
    second = planner.make_plan(controller.topology, inputs)
    for name in ("max_power_w", "energy_wh", "min_power_w", "node_limit_w", "node_limit_a",
                 "departure_slot", "phases", "phase", "weight"):
        assert np.array_equal(getattr(first.built.problem, name),
                              getattr(second.built.problem, name)), name
    assert first.plan.connectors.keys() == second.plan.connectors.keys()
    for ref, cplan in first.plan.connectors.items():
        assert np.array_equal(cplan.power_w, second.plan.connectors[ref].power_w)
        assert cplan.binding == second.plan.connectors[ref].binding
    assert first.plan.fixed_w == second.plan.fixed_w == {ConnectorRef("CP0", 1): 22_080.0}
    assert first.plan.idle_w == second.plan.idle_w
    # the DR hour is in the picture: its slots leave nothing beside the offline station's
    # 22 kW (planned at its maximum) under 20 kW; before it, 40 kW less those 22 kW
    dr_slot = next(i for i, s in enumerate(inputs.starts) if s >= T0 + timedelta(hours=1))
    assert first.built.problem.node_limit_w[0, dr_slot] == 0.0
    assert first.built.problem.node_limit_w[0, 0] == 40_000.0 - 22_080.0


def test_a_picture_taken_does_not_move_with_the_site():
    controller = _controller()
    inputs = controller.plan_inputs(T0)
    before = planner.build_problem(controller.topology, inputs).problem
    # the site moves on: a session ends, another starts, a car draws, the cap drops
    controller.on_event(ev.SessionStopped("CP1", 1, 101, T0 + timedelta(seconds=5), 1000.0,
                                          "Local"))
    controller.on_event(ev.SessionStarted("CP2", 2, 900, "TAG", 0.0, T0))
    controller.limits.set_operator_cap(5_000.0)
    after = planner.build_problem(controller.topology, inputs).problem
    assert np.array_equal(before.max_power_w, after.max_power_w)
    assert np.array_equal(before.node_limit_w, after.node_limit_w)
    # and a new picture sees the change
    assert controller.plan_inputs(T0).root_w[0] == 5_000.0


def test_the_planner_runs_in_any_thread():
    controller = _controller()
    inputs = controller.plan_inputs(T0)
    made = {}
    worker = threading.Thread(target=lambda: made.update(
        made=planner.make_plan(controller.topology, inputs)))
    worker.start()
    worker.join(timeout=60)
    here = planner.make_plan(controller.topology, inputs)
    for ref, cplan in here.plan.connectors.items():
        assert np.array_equal(cplan.power_w, made["made"].plan.connectors[ref].power_w)


def test_picture_in_steps_equals_the_picture_at_once(monkeypatch):
    monkeypatch.setattr(plan_inputs, "SESSIONS_PER_STEP", 2)
    controller = _controller()
    steps = plan_inputs.read_steps(controller, T0)
    yielded = 0
    while True:
        try:
            next(steps)
            yielded += 1
        except StopIteration as done:
            in_steps = done.value
            break
    assert yielded == 2       # 6 sessions, 2 per step
    at_once = controller.plan_inputs(T0)
    assert [s.ref for s in in_steps.sessions] == [s.ref for s in at_once.sessions]
    assert [s.remaining_wh for s in in_steps.sessions] == \
        [s.remaining_wh for s in at_once.sessions]


async def test_replan_solves_off_the_loop():
    controller = _controller()
    loop_thread = threading.get_ident()
    seen = []
    original = planner.make_plan

    def make_plan(*args, **kwargs):
        seen.append(threading.get_ident())
        return original(*args, **kwargs)

    planner.make_plan = make_plan
    try:
        plan = await controller.replan({"test"})
    finally:
        planner.make_plan = original
    assert seen and seen[0] != loop_thread
    assert len(plan.connectors) == 5 and ConnectorRef("CP0", 1) in plan.fixed_w
    assert controller.stats.last_times.solve_s >= 0.0
