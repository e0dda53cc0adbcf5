"""Energy first, exactly (issue 9, defect 2): the schedule solve() returns delivers the most
weighted energy any lawful schedule can, also under per-phase current limits shared by 1- and
3-phase cars at mixed voltages, where one Wh of one car can make room for 1/3, 2/3, 3, 240/230,
... Wh of others and no single weighted objective separates the priorities.

The reference is an LP written here from the problem's definition alone (dense, one variable per
(car, slot), scipy's linprog), maximising weighted energy and nothing else.
"""

import numpy as np
import pytest
import scipy.optimize
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optimizer import Problem, check, solve
from optimizer.objective import delivered_wh, quantised_weight

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def energy_only_optimum_wh(problem: Problem) -> float:
    """max sum_i w_i d_i over lawful x (no minimum rates): d_i = sum_t wh_t x_it <= energy_i,
    0 <= x_it <= max inside the window, every node's power and phase currents within limits."""
    n, t = problem.n_connectors, problem.n_slots
    weight = quantised_weight(problem.weight)
    wh = problem.slot_s / 3600.0
    slots = np.arange(t)
    present = (slots >= problem.arrival_slot[:, None]) & (slots < problem.departure_slot[:, None])
    upper = np.where(present, problem.max_power_w, 0.0).ravel()  # x[i, t] at i * t + t
    c = -(weight[:, None] * wh[None, :]).ravel()
    rows, rhs = [], []
    for i in range(n):  # energy of car i
        row = np.zeros(n * t)
        row[i * t:(i + 1) * t] = wh
        rows.append(row)
        rhs.append(problem.energy_wh[i])
    # Which connectors are under node m: walk up from each connector's node.
    under = np.zeros((problem.n_nodes, n), dtype=bool)
    for i in range(n):
        node = problem.connector_node[i]
        while node >= 0:
            under[node, i] = True
            node = problem.node_parent[node]
    for m in range(problem.n_nodes):
        for s in range(t):
            if np.isfinite(problem.node_limit_w[m, s]):
                row = np.zeros(n * t)
                row[np.flatnonzero(under[m]) * t + s] = 1.0
                rows.append(row)
                rhs.append(problem.node_limit_w[m, s])
            if np.isfinite(problem.node_limit_a[m, s]):
                for ph in range(3):
                    row = np.zeros(n * t)
                    for i in np.flatnonzero(under[m]):
                        volts = problem.voltage_v[i]
                        if problem.phases[i] == 3:
                            row[i * t + s] = 1.0 / (3.0 * volts)
                        elif problem.phase[i] == ph:
                            row[i * t + s] = 1.0 / volts
                    rows.append(row)
                    rhs.append(problem.node_limit_a[m, s])
    result = scipy.optimize.linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs),
                                    bounds=np.column_stack([np.zeros(n * t), upper]),
                                    method="highs")
    assert result.status == 0, result.message
    return -float(result.fun)


def weighted_energy_wh(problem: Problem, power_w: np.ndarray) -> float:
    delivered = np.minimum(delivered_wh(problem, power_w), problem.energy_wh)
    return float(quantised_weight(problem.weight) @ delivered)


def assert_energy_first(problem: Problem, backend: str = "auto") -> None:
    schedule = solve(problem, backend=backend)
    assert check(problem, schedule.power_w) == []
    best = energy_only_optimum_wh(problem)
    got = weighted_energy_wh(problem, schedule.power_w)
    assert got == pytest.approx(best, rel=1e-6, abs=1e-3), (schedule.backend, schedule.status)


def test_one_three_phase_car_against_two_single_phase_cars():
    # 16 A per phase: the 3-phase car (11 kW, 15.9 A per phase) or both 1-phase cars (L1, L3)
    # at 3680 W. One W of the 3-phase car costs 1/3 W of each 1-phase car (2/3 W), so weights
    # 1 vs 1.48 still favour the 3-phase car: 2757 Wh is lawful, the solver gave 1840 Wh.
    problem = Problem(slot_s=[900.0] * 6, max_power_w=[11000.0, 7360.0, 7360.0],
                      energy_wh=[20000.0] * 3, arrival_slot=[5] * 3, departure_slot=[6] * 3,
                      node_parent=[-1], connector_node=[0, 0, 0], node_limit_a=16.0,
                      phases=[3, 1, 1], phase=[0, 0, 2], weight=[1.0, 1.48, 1.48])
    for backend in ("auto", "highs", "pulp"):
        assert_energy_first(problem, backend=backend)


@pytest.mark.parametrize("weights", [[1.0, 1.04], [1.0, 1.05], [1.04, 1.0], [1.0, 1.0]])
def test_mixed_voltages_on_one_phase(weights):
    # A 240 V and a 230 V single-phase car on L1 under 16 A: an amp buys 240 or 230 W, so the
    # best weighted energy per amp decides, by a margin far below the objective's weight steps.
    problem = Problem(slot_s=[900.0] * 4, max_power_w=[7680.0, 7360.0], energy_wh=[20000.0] * 2,
                      arrival_slot=[0, 0], departure_slot=[4, 4], node_parent=[-1],
                      connector_node=[0, 0], node_limit_a=16.0, phases=[1, 1], phase=[0, 0],
                      voltage_v=[240.0, 230.0], weight=weights,
                      price_per_kwh=[0.4, 0.1, 0.3, 0.2])
    assert_energy_first(problem)


def random_phase_site(seed: int) -> Problem:
    """A small site under a per-phase current limit where energy is short: 1- and 3-phase cars
    at 230/240 V with large requests and short stays, two weights near the exchange rates
    (1 and 1.48: 2/3 of 1.48 is just under 1), time-of-use prices."""
    rng = np.random.default_rng(seed)
    n, t = int(rng.integers(2, 6)), int(rng.integers(1, 7))
    arrival = rng.integers(0, t, n)
    return Problem(
        slot_s=np.full(t, 900.0), max_power_w=rng.choice([3680.0, 7360.0, 11000.0, 22000.0], n),
        energy_wh=rng.integers(10, 81, n) * 500.0, arrival_slot=arrival,
        departure_slot=np.minimum(arrival + rng.integers(1, 3, n), t), node_parent=[-1],
        connector_node=[0] * n, node_limit_a=float(rng.integers(4, 33)),
        phases=rng.choice([1, 3], n), phase=rng.integers(0, 3, n),
        voltage_v=rng.choice([230.0, 240.0], n), weight=rng.choice([1.0, 1.48], n),
        price_per_kwh=rng.choice([0.1, 0.2, 0.25, 0.4], t))


# Seeds 0-39, and the ones below 1000 where the single weighted objective lost energy.
FAILED_BEFORE = {32, 36, 80, 132, 194, 260, 532, 761, 780, 866, 877}


@pytest.mark.parametrize("seed", sorted(set(range(40)) | FAILED_BEFORE))
def test_solve_delivers_the_energy_only_optimum_on_short_sites(seed):
    assert_energy_first(random_phase_site(seed))


@st.composite
def phase_problems(draw):
    """Small sites under per-phase current limits: 1- and 3-phase cars, 230/240 V, close
    weights, prices; no minimum rates (the relaxation, where solve() claims an optimum)."""
    n = draw(st.integers(2, 6))
    # Two weights per site (few distinct weights keep the objective's energy scale small), with
    # ratios near the exchange rates 2/3, 3/2, 3, 1/3 and 240/230.
    weights = draw(st.lists(st.sampled_from([1.0, 1.04, 1.48, 1.49, 1.51, 1.52, 2.97, 3.03]),
                            min_size=2, max_size=2))
    t = draw(st.integers(1, 6))
    m = draw(st.integers(1, 3))
    parents = [-1] + [draw(st.integers(0, j - 1)) for j in range(1, m)]
    arrival = np.array(draw(st.lists(st.integers(0, t - 1), min_size=n, max_size=n)))
    stay = np.array(draw(st.lists(st.integers(1, t), min_size=n, max_size=n)))
    # Mostly binding current limits, few power limits: the exchanges between phases decide.
    amps = st.one_of(st.just(np.inf), st.integers(4, 32).map(float), st.integers(4, 32).map(float))
    power = st.one_of(st.just(np.inf), st.just(np.inf), st.integers(3, 40).map(lambda k: k * 1e3))
    return Problem(
        slot_s=np.full(t, 900.0),
        max_power_w=np.array(draw(st.lists(st.sampled_from([3680.0, 7360.0, 11000.0, 22000.0]),
                                           min_size=n, max_size=n))),
        energy_wh=draw(st.lists(st.integers(1, 40).map(lambda k: k * 500.0), min_size=n,
                                max_size=n)),
        arrival_slot=arrival, departure_slot=np.minimum(arrival + stay, t),
        node_parent=parents,
        connector_node=draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n)),
        node_limit_w=np.array(draw(st.lists(power, min_size=m * t, max_size=m * t))).reshape(m, t),
        node_limit_a=np.array(draw(st.lists(amps, min_size=m * t, max_size=m * t))).reshape(m, t),
        phases=draw(st.lists(st.sampled_from([1, 3]), min_size=n, max_size=n)),
        phase=draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)),
        voltage_v=draw(st.lists(st.sampled_from([230.0, 240.0]), min_size=n, max_size=n)),
        weight=draw(st.lists(st.sampled_from(weights), min_size=n, max_size=n)),
        price_per_kwh=draw(st.one_of(st.none(), st.lists(
            st.sampled_from([0.1, 0.2, 0.25, 0.4]), min_size=t, max_size=t))))


@SETTINGS
@given(phase_problems())
@example(
    problem=Problem(slot_s=np.array([900., 900., 900.]),
     max_power_w=np.array([[3680., 3680., 3680.],
            [3680., 3680., 3680.],
            [3680., 3680., 3680.],
            [3680., 3680., 3680.],
            [3680., 3680., 3680.],
            [3680., 3680., 3680.]]),
     energy_wh=np.array([ 500.,  500., 1500.,  500.,  500., 1500.]),
     arrival_slot=np.array([1, 0, 0, 0, 2, 2]),
     departure_slot=np.array([2, 1, 2, 3, 3, 3]),
     node_parent=np.array([-1,  0,  0]),
     connector_node=np.array([1, 0, 1, 0, 0, 0]),
     node_limit_w=np.array([[  np.inf,   np.inf, 3000.],
            [  np.inf,   np.inf,   np.inf],
            [  np.inf,   np.inf,   np.inf]]),
     node_limit_a=np.array([[np.inf, np.inf,  4.],
            [np.inf,  7., np.inf],
            [np.inf, np.inf, np.inf]]),
     min_power_w=np.array([0., 0., 0., 0., 0., 0.]),
     phases=np.array([1, 1, 1, 1, 1, 3]),
     phase=np.array([0, 0, 0, 0, 0, 0]),
     voltage_v=np.array([230., 230., 230., 230., 230., 230.]),
     weight=np.array([1.48, 1.48, 1.48, 1.48, 1.49, 1.48]),
     price_per_kwh=np.array([0.1, 0.1, 0.1]),
     n_slots=3,
     previous_w=None),
)  # HiGHS's dual simplex ended 'Unknown' here: solve fell back to EDF (found in the suite, s29)
def test_solve_delivers_the_energy_only_optimum(problem):
    assert_energy_first(problem)


@pytest.mark.parametrize("seed", [32, 36, 80, 132])
def test_pulp_backend_is_energy_first_too(seed):
    assert_energy_first(random_phase_site(seed), backend="pulp")


def test_mixed_voltages_on_one_phase_next_to_a_three_phase_car():
    # Found by a random search against the single weighted objective (5782 of 5796 weighted
    # Wh): its exchange rates came from the largest and smallest current per watt only (3:1,
    # the 3-phase car against a 230 V single-phase one), so the 240/230 trade between the two
    # single-phase cars on L1 at equal weights was not separated from cost.
    problem = Problem(slot_s=[900.0, 900.0], max_power_w=[3680.0, 7360.0, 11000.0],
                      energy_wh=[14500.0, 39000.0, 5000.0], arrival_slot=[1, 0, 0],
                      departure_slot=[2, 1, 2], node_parent=[-1], connector_node=[0, 0, 0],
                      node_limit_a=17.0, phases=[1, 1, 3], phase=[0, 0, 0],
                      voltage_v=[240.0, 230.0, 230.0], weight=[2.0, 2.0, 1.04],
                      price_per_kwh=[0.4, 0.2])
    assert_energy_first(problem)
