"""plan.binding_sources, computed for every connector's path at once (s33-warm), names the very
limit the connector-by-connector loop it replaced named: the connector's maximum, the nearest
node without room (power, or a phase current as watts of that connector), or its energy need."""

import asyncio

import numpy as np
import pytest

from benchmarks import replan_controller as rc
from smartcharge.site.limits import SOURCE_CONNECTOR, SOURCE_ENERGY
from smartcharge.site.plan import _source, binding_sources, node_loads


def loop_binding_sources(problem, power_w, topology, root_sources, refs, node_sources=None):
    """The replaced implementation, verbatim: the reference."""
    n = problem.n_connectors
    if n == 0:
        return []
    load_w, load_a = node_loads(problem, power_w)
    headroom_w = problem.node_limit_w[:, 0] - load_w[:, 0]
    headroom_a = problem.node_limit_a[:, 0][:, None] - load_a[:, :, 0]
    out = []
    for i in range(n):
        name = f"{refs[i].station_id}/{refs[i].connector_id}"
        max_w = problem.upper_w[i, 0]
        if power_w[i, 0] >= max_w - 1.0 and max_w > 0:
            out.append(_source(SOURCE_CONNECTOR, name, "connector or car maximum"))
            continue
        need_w = problem.min_power_w[i] if power_w[i, 0] <= 1e-6 else 50.0
        with np.errstate(divide="ignore"):
            watts_per_amp = 1.0 / problem.amps_per_w[i]
        found = None
        for node in topology.ancestors(int(problem.connector_node[i])):
            on_phase = np.isfinite(watts_per_amp)
            room_a_as_w = np.min(headroom_a[node][on_phase] * watts_per_amp[on_phase])
            if min(headroom_w[node], room_a_as_w) < max(need_w, 1.0):
                found = (root_sources[0] if node == 0 and root_sources[0] is not None
                         else (node_sources or {}).get(node, topology.node_sources[node]))
                break
        if found is None:
            detail = ("energy need met" if problem.energy_wh[i] <= 1e-6
                      else "energy need spread over the stay")
            found = _source(SOURCE_ENERGY, name, detail)
        out.append(found)
    return out


@pytest.mark.parametrize("family", ["phase", "power"])
def test_bindings_name_what_the_connector_loop_named(family):
    async def planned():
        controller, _ = rc.controller_at(60, family, seed=3, warm=False)
        await controller.replan({"start"})
        return controller
    controller = asyncio.run(planned())
    problem, built = controller.build_problem(controller.clock.now())
    plan = controller.plan
    power = np.array([plan.connectors[s.ref].power_w - s.floor_w for s in built.sessions])
    inputs = controller.plan_inputs(controller.clock.now())
    roots = list(inputs.root_sources)
    rng = np.random.default_rng(0)
    variants = [power, np.zeros_like(power), problem.upper_w.copy(),
                # some at their maximum, some paused, some a little below: every branch
                np.where(rng.random(power.shape) < 0.3, 0.0, problem.upper_w * 0.98),
                np.where(rng.random(power.shape) < 0.5, problem.upper_w, power * 0.5)]
    kinds = set()
    for power_w in variants:
        for sources in (built.circuit_sources, None, {0: roots[0]}):
            got = binding_sources(problem, power_w, controller.topology, roots,
                                  built.controlled, sources)
            assert got == loop_binding_sources(problem, power_w, controller.topology, roots,
                                               built.controlled, sources)
            kinds |= {s.source for s in got if s is not None}
    # the connector, a node and the energy need each bound somewhere
    assert {SOURCE_CONNECTOR, SOURCE_ENERGY} < kinds, kinds
