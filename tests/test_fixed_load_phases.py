"""A fixed load is counted on the phases it draws on (docs/promises.md, promise 1: a breaker's
per-phase current limit holds).

A fixed load (an uncontrollable or offline session, a station's floor, a draw without a
session, a boot-closed session) comes off the current limit of every node above it. It was
counted balanced over its CONNECTOR's phases: a single-phase car on a 3-phase connector drawing
7.36 kW puts 32 A on one phase, and was counted as 10.7 A on each - the controlled cars beside it
were planned into 21 A of that phase that were not there. Now a load is counted at the most it
can put on one phase: on its one phase when the car is known to be single-phase, balanced when
known three-phase, and when its phases are unknown at the worst a car of either kind drawing it
could put on one phase (all of it on one phase, as far as the connector's current allows).

Planner level: `build_problem` / `make_plan` on a picture, the true per-phase current of the
fixed load plus the controlled car's plan under a 40 A breaker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from smartcharge.model import Circuit, Connector, Site, Station
from smartcharge.site import planner
from smartcharge.site.limits import LimitSource
from smartcharge.site.planner import PlanInputs, SessionInput
from smartcharge.site.topology import ConnectorRef, SiteTopology

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
VOLT = 230.0
BREAKER_A = 40.0
FIXED = ConnectorRef("FIXED", 1)       # a 3-phase 32 A connector whose load is fixed
CAR = ConnectorRef("CAR", 1)           # a 3-phase 32 A connector with a controlled car
SINGLE_PHASE_W = 32.0 * VOLT           # a single-phase car at 32 A: 7 360 W, all on one phase


def _topology(breaker_a: float = BREAKER_A) -> SiteTopology:
    site = Site(name="phases",
                circuits=(Circuit("grid", None, limit_w=100_000.0),
                          Circuit("breaker", "grid", limit_a=breaker_a)),
                stations=(Station("FIXED", "breaker", (Connector(1),)),
                          Station("CAR", "breaker", (Connector(1),))))
    return SiteTopology(site)


def _session(ref, tx, **kw) -> SessionInput:
    fields = dict(ref=ref, transaction_id=tx, remaining_wh=40_000.0, need_told=True,
                  departure=T0 + timedelta(hours=4), phases=3, phase=0, phases_known=True)
    fields.update(kw)
    return SessionInput(**fields)


def _inputs(sessions, sessionless_w=()) -> PlanInputs:
    starts = tuple(T0 + timedelta(minutes=15 * k) for k in range(8))
    ends = starts[1:] + (starts[-1] + timedelta(minutes=15),)
    source = LimitSource("site", "grid", "grid connection")
    return PlanInputs(now=T0, starts=starts, ends=ends, root_w=np.full(8, np.inf),
                      root_sources=(source,) * 8, sessions=tuple(sessions),
                      sessionless_w=tuple(sessionless_w))


def _car_a_now(made) -> float:
    """The controlled 3-phase car's current per phase in the plan's first slot [A]."""
    return made.plan.connectors[CAR].power_w[0] / (3 * VOLT)


# (the fixed load's picture, its true current on its most loaded phase [A], the breaker [A])
CASES = {
    # a single-phase car on the 3-phase connector, its phase known from its per-phase currents
    "known_single_phase": (dict(sessions=[_session(FIXED, 1, fixed_w=SINGLE_PHASE_W, phases=1,
                                                   phase=0, phases_known=True)]), 32.0, BREAKER_A),
    # its phases not known yet: it may be a single-phase car, all on one phase
    "unknown_phases": (dict(sessions=[_session(FIXED, 1, fixed_w=SINGLE_PHASE_W, phases=3,
                                               phase=0, phases_known=False)]), 32.0, BREAKER_A),
    # a station that cannot pause: its floor, 6 A on the single-phase car's one phase (under
    # a 36 A breaker: the car beside it at its 32 A would fit a floor counted at 2 A)
    "floor_single_phase": (dict(sessions=[_session(FIXED, 1, floor_w=6.0 * VOLT, phases=1,
                                                   phase=0, phases_known=True,
                                                   remaining_wh=0.0, declined=True)]), 6.0, 36.0),
    # a draw without a session (a free-vend station): nothing tells its phases
    "sessionless": (dict(sessions=[], sessionless_w=[(FIXED, SINGLE_PHASE_W)]), 32.0,
                    BREAKER_A),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_cars_beside_a_fixed_load_stay_under_its_phase_limit(case):
    """Failed before the fix on every case: the car was planned at 29.3 A per phase beside a
    fixed load counted at 10.7 A (61.3 A on the loaded phase of a 40 A breaker; the floor:
    32 A beside 6 A counted as 2 A, 38 A on a 36 A breaker)."""
    picture, fixed_phase_a, breaker_a = CASES[case]
    sessions = [*picture["sessions"], _session(CAR, 2)]
    made = planner.make_plan(_topology(breaker_a),
                             _inputs(sessions, picture.get("sessionless_w", ())))
    car_a = _car_a_now(made)
    assert car_a > 0.0                                    # it fits beside the load
    assert car_a + fixed_phase_a <= breaker_a + 1e-6, (case, car_a)


# (the fixed load's picture, the most it can put on one phase [A])
NOT_MORE = {
    # a three-phase car's 11 kW are 16 A on each phase
    "known_three_phase": (_session(FIXED, 1, fixed_w=3 * 16.0 * VOLT, phases=3,
                                   phases_known=True), 16.0),
    # a floor is the minimum current on each phase the car is planned on, whatever the car:
    # 4 140 W of a car of unknown phases are 6 A, not 18 A on one phase
    "floor_unknown_phases": (_session(FIXED, 1, floor_w=3 * 6.0 * VOLT, phases=3,
                                      phases_known=False, remaining_wh=0.0, declined=True),
                             6.0),
    # a 32 A connector's 22 kW, its car's phases unknown: 32 A on each phase (a single-phase
    # car cannot put 96 A on one)
    "maximum_unknown_phases": (_session(FIXED, 1, fixed_w=3 * 32.0 * VOLT, phases=3,
                                        phases_known=False), 32.0),
}


@pytest.mark.parametrize("case", sorted(NOT_MORE))
def test_a_fixed_load_is_counted_at_no_more_than_it_can_draw_on_a_phase(case):
    """The car beside it gets the rest of the breaker's 40 A (at most its own 32 A)."""
    fixed, fixed_phase_a = NOT_MORE[case]
    made = planner.make_plan(_topology(), _inputs([fixed, _session(CAR, 2)]))
    assert _car_a_now(made) == pytest.approx(min(32.0, BREAKER_A - fixed_phase_a), abs=0.01)
