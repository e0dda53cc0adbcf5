"""The runtime guard: what the meters say, against every limit in force, all the time.

Like evcc's circuits: each node of the tree sums the measured draw of the connectors under it
(MeterValues, aged by the server's clock). A charging connector whose meter is stale counts at
its maximum (missing is not zero); one not measured yet in a fresh session counts at what its
profiles allow; a station's connectors so counted draw together at most the maximum profile it
accepted (what its meters report is never cut). A node over its limit (W, or A on any phase) is logged with the node and the
margin, and acted on at once: every connector under it measured drawing clearly more than its
profiles allow is planned from then on as a fixed load at what it draws (it does not obey), and
the controller re-plans, so the others under that node come down by the margin. A connector
found drawing over its profiles while no node is over yet is planned around all the same.
A sample taken before the limit in force now (and the car's settle time) shows what the car
drew then: the connector counts at most at what its profiles allow now until its next sample -
also while its station's plans are being sent again (an ISO 15118 car's needs, a set-up after a
reconnect: what it accepted is known, but a set-up may have lost the plan, so then at most at
the larger of the plan and what it falls back to without it).

The guard acts when a node goes over, or goes further over; a node that stays over by the same
margin (a stale meter counted at its maximum) is not acted on again and again.

Each connector's count is kept from one pass to the next with the moment it may next change on
its own, and a pass counts again only the connectors whose inputs changed or whose moment came
(guard_counts.py): what a pass costs follows what changed, not the size of the site.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from smartcharge import units
from smartcharge.site.guard_counts import ConnectorCounts
from smartcharge.site.topology import ConnectorRef

log = logging.getLogger(__name__)

TOLERANCE_W = 100.0          # meters and rounding: below this over a limit is not an overload
OVERDRAW_W = 500.0           # a connector this far over what its profiles allow disobeys
# connectors per step of an asynchronous pass (check_async): steps of ~2 ms at 5 000, the
# loop given back once the turn's safety share is spent (turn_share.py)
CHUNK = 50
# connectors named in an overload's line per step of the pass: the grid's line at 5 000
# stations named every drawing connector in one step, 18 ms of the loop's CPU (s34-stall)
ACT_PER_STEP = 500
_TICK = timedelta(microseconds=1)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two moments, None being never."""
    if a is None:
        return b
    return a if b is None or a <= b else b


@dataclass(frozen=True)
class Overload:
    node: str
    unit: str                 # "W" or "A" (the most loaded phase)
    load: float
    limit: float

    @property
    def margin(self) -> float:
        return self.load - self.limit


class SiteGuard:
    def __init__(self, controller) -> None:
        self.controller = controller
        self.topology = controller.topology
        self._over: dict[tuple[str, str], float] = {}    # (node, unit) -> margin acted on
        self._ancestors_of: dict[str, tuple[int, ...]] = {}
        self._phases_of: dict[ConnectorRef, tuple[int, ...]] = {}
        self.overloads_seen = 0
        self.overdraw_w = OVERDRAW_W
        # every connector's count, kept from pass to pass (guard_counts.py)
        self.counts = ConnectorCounts(self)

    # --- what the meters say ----------------------------------------------------------------
    def draw_w(self, ref: ConnectorRef, now: datetime) -> tuple[float, str]:
        """(draw [W], "fresh" | "stale" | "unmeasured" | "idle") of one connector."""
        watts, how, _, _ = self._assess(ref, now)
        return watts, how

    def _assess(self, ref: ConnectorRef, now: datetime
                ) -> tuple[float, str, float | None, datetime | None]:
        """draw_w's (W, how), what its profiles allowed since its sample when the sample
        counts as obeying evidence (else None): one look at the installed profiles for both -
        and the first moment from which the answer may differ with no input changed (None:
        never): the sample going stale, a young session growing old, an edge of its installed
        schedule or the end of a settle time after one (guard_counts.py keeps the answer until
        then). The moment may come early (then the same answer is made again), never late."""
        c = self.controller
        stale_after_s = c.settings.stale_after_s
        measured = c.state.measured_w(ref, now, stale_after_s)
        if measured is not None:
            sample = c.state.measurements.get(ref)
            # fresh while `now - arrived <= stale_after_s` (state.measured_w): stale from the
            # next microsecond on (the clocks' resolution)
            until = sample.arrived + timedelta(seconds=stale_after_s) + _TICK
            installed = c.installed
            if installed is None:
                return measured, "fresh", None, until
            governs = installed.governs(ref)
            if not governs and not installed.ours(ref):
                return measured, "fresh", None, until
            # its installed schedule, looked at once for both questions below (twice was
            # half of a pass at 1 000 connectors, issue 10)
            step = installed.step_of(ref)
            since = installed.followed_since(ref, step)
            until = _earliest(until, installed.next_change(step, now, sample.ordered_at))
            # when it was measured on our clock as far as we can tell (`ordered_at`: never
            # after we received it): a station ahead stamps a sample taken before the limit in
            # force after it (the closed loop and the plan read it so too)
            if not (since is None or sample.ordered_at >= since):
                # taken before the limit in force now (and the car's settle time): it
                # shows what the car drew then; until the next sample, it draws what it
                # may now
                allowed = installed.installed_w(ref, None, step)
                if allowed is not None and not governs:
                    # its station's plans are being sent again (an ISO 15118 car's needs,
                    # or a set-up after a reconnect, which may have lost its plan): what it
                    # accepted still limits it, or what it falls back to without the plan.
                    # Counted at its old sample, a car paused since drew its full rate in
                    # the reading for as long as the re-send took (a false overload in
                    # the demo under CPU load)
                    fallback = installed.fallback_w(ref)
                    until = _earliest(until, installed.fallback_change(ref, now))
                    allowed = None if fallback is None else max(allowed, fallback)
                if allowed is not None and allowed < measured:
                    return allowed, "fresh", None, until
                return measured, "fresh", None, until
            if not governs:
                return measured, "fresh", None, until     # proves nothing about obedience
            return measured, "fresh", installed.installed_w(ref, sample.ordered_at, step), until
        session = c.state.sessions.get(ref)
        if session is None:
            return 0.0, "idle", None, None
        young_until = session.started_at + timedelta(seconds=stale_after_s)
        if now < young_until and c.state.last_measured_w(ref) is None:
            allowed = self.allowed_w(ref)
            if allowed is not None:
                step = c.installed.step_of(ref)
                return allowed, "unmeasured", None, _earliest(
                    young_until, c.installed.next_change(step, now, None))
            return self.topology.max_power_w(ref), "stale", None, young_until
        return self.topology.max_power_w(ref), "stale", None, None

    def allowed_w(self, ref: ConnectorRef, since: datetime | None = None) -> float | None:
        """The most its profiles allowed from `since` (a sample's time) until now."""
        installed = self.controller.installed
        return installed.installed_w(ref, since) if installed is not None else None

    def node_loads(self, now: datetime) -> tuple[np.ndarray, np.ndarray, dict]:
        """((M,) W per node, (M,3) A per node and phase, {ref: (W, how)})."""
        (load_w, load_a, draws), _ = _run(self._node_loads(now))
        return load_w, load_a, dict(draws)

    def _node_loads(self, now: datetime):
        """node_loads as a generator that yields every CHUNK connectors counted again, so a
        pass that counts many can give the event loop back in between (`check_async`).
        Returns it, plus {ref: (W drawn, W allowed)} of every connector whose sample is
        obeying evidence and shows it drawing clearly more. Each connector's count is kept
        from one pass to the next and made again only when its inputs changed or its moment
        came (guard_counts.py); the draws returned are the kept dict (read it only)."""
        counts = self.counts
        try:
            stations = yield from counts.refresh(now, CHUNK)
            load_w, load_a = yield from counts.node_loads(stations, now, CHUNK)
        except BaseException:
            counts._key = None      # what this pass was told of is gone: count everything next
            raise
        return (load_w, load_a, counts.draws), counts.over_profile

    def _phases_and_amps(self, ref: ConnectorRef, watts: float, how: str
                         ) -> tuple[tuple[int, ...], float]:
        """The site phases a connector's draw (`how`: draw_w's) may load, and its A on each:
        the most it may put on one phase (topology.most_phase_a, as the planner counts a fixed
        load). A car whose phases are not known may load any of its connector's phases with
        all of it (a station that reports no per-phase currents; a draw without a session
        whose sample did not show them): counted balanced, a single-phase car's 32 A on L1
        were 10.7 A, and the guard did not see its breaker's phase go over
        (tests/test_fixed_load_phases_e2e.py). What its profiles allow ("unmeasured") is per
        phase whatever its car's phases (a limit in A is per phase; one in W is sent a third
        while the phases are not known: installed.w_factor): counted balanced, as planned."""
        phases, first, known = self.controller.draw_phase_use(ref)
        used = (first,) if phases == 1 else self._site_phases(ref)
        if how == "unmeasured":
            voltage = self.topology.station(ref.station_id).voltage_v
            return used, units.w_to_a(watts, phases, voltage)
        return used, self.topology.most_phase_a(ref, watts, phases if known else None)

    def _station_cut(self, station_id: str, rows: list, load_w: np.ndarray,
                     load_a: np.ndarray) -> tuple[float, list[float]] | None:
        """A station's connectors counted at estimates (`rows`: (W, site phases, A) each) draw
        together at most its maximum profile, when it accepted one: what their estimates add
        over it (in W, and in A on each site phase - the station's supply is one set of
        phases) comes off the station's node and every node above it (None: no maximum
        accepted). What its meters report stays whole: only the estimates are cut, never
        below what was measured. (Counted whole, two stale meters on a 22 kW station made a
        false 44 kW on the circuit above: docs/demo.md, guard lines, cause 3.)"""
        installed = self.controller.installed
        control = installed.stations.get(station_id) if installed is not None else None
        cap = control.station_max if control is not None else None
        if cap is None:
            return None
        station_node = self._ancestors(station_id)[0]
        cap_w, cap_a = cap
        est_w = sum(w for w, _, _ in rows)
        # the station's node holds every connector of the station: what was measured is
        # its load less the estimates
        fresh_w = load_w[station_node] - est_w
        cut_w = min(est_w, max(0.0, load_w[station_node] - max(cap_w, fresh_w)))
        cut_a = [0.0, 0.0, 0.0]
        for p in range(3):
            est_a = sum(a for _, used, a in rows if p in used)
            fresh_a = load_a[station_node][p] - est_a
            cut_a[p] = min(est_a, max(0.0, load_a[station_node][p] - max(cap_a, fresh_a)))
        return float(cut_w), [float(a) for a in cut_a]

    def _site_phases(self, ref: ConnectorRef) -> tuple[int, ...]:
        """The site phases a 3-phase load on the connector uses (fixed wiring: asked once)."""
        found = self._phases_of.get(ref)
        if found is None:
            found = tuple(self.topology.site_phase(ref, k) for k in range(3))
            self._phases_of[ref] = found
        return found

    def _ancestors(self, station_id: str) -> tuple[int, ...]:
        """The station's node and every node above it (the tree is fixed: asked once)."""
        found = self._ancestors_of.get(station_id)
        if found is None:
            found = tuple(self.topology.ancestors(self.topology.station_node[station_id]))
            self._ancestors_of[station_id] = found
        return found

    def overloads(self, now: datetime) -> tuple[list[Overload], dict]:
        found, draws, _ = _run(self._overloads(now))
        return found, dict(draws)

    def _overloads(self, now: datetime):
        topo = self.topology
        (load_w, load_a, draws), evidence = yield from self._node_loads(now)
        root_w, _ = self.controller.limits.effective_root_limit_w(
            [now], [now + timedelta(seconds=1)])
        # every node at once (a node per station: at 5 000 stations a loop of numpy scalars
        # here cost ~6 ms of the loop in one step of the pass, more under load: s22-msgcost);
        # the same comparisons, the overloads in node order, W before A
        limit_w = topo.static_limit_w.copy()
        limit_w[0] = min(limit_w[0], float(root_w[0]))
        # the most loaded phase (numpy's max over an axis of 3 took ~1 ms at 5 000 nodes)
        most_a = np.maximum(np.maximum(load_a[:, 0], load_a[:, 1]), load_a[:, 2])
        over_w = load_w > limit_w + TOLERANCE_W
        over_a = most_a > topo.static_limit_a + units.w_to_a(TOLERANCE_W, 1,
                                                              units.NOMINAL_VOLTAGE_V)
        out = []
        for node in np.flatnonzero(over_w | over_a).tolist():
            if over_w[node]:
                out.append(Overload(topo.node_ids[node], "W", float(load_w[node]),
                                    float(limit_w[node])))
            if over_a[node]:
                out.append(Overload(topo.node_ids[node], "A", float(most_a[node]),
                                    float(topo.static_limit_a[node])))
        return out, draws, evidence

    # --- acting -----------------------------------------------------------------------------
    def check(self, now: datetime | None = None) -> list[Overload]:
        """Compare, and act on every node that went (further) over its limit, or under which
        a connector is newly found drawing more than its profiles allow."""
        return _run(self._check(now or self.controller.clock.now()))

    def audit_next(self) -> None:
        """The next pass counts every connector again and compares with the kept counts
        (guard_counts.py: a kept count that differs is a change no watcher was told)."""
        self.counts.audit_next = True

    async def check_async(self, now: datetime | None = None) -> list[Overload]:
        """`check`, giving the event loop back every CHUNK connectors: on a site of thousands
        a whole pass would hold every station's answer up for tens of ms (issue 10). The
        connectors are read at slightly different instants, each against the same `now`."""
        steps = self._check(now or self.controller.clock.now())
        share = getattr(self.controller, "share", None)
        try:
            while True:
                next(steps)
                if share is None or share.should_yield():
                    await asyncio.sleep(0)
        except StopIteration as stop:
            return stop.value

    def _check(self, now: datetime):
        found, draws, evidence = yield from self._overloads(now)
        current = {(o.node, o.unit): o.margin for o in found}
        # every culprit of the site once, each overload's those under its node; the
        # connectors under each node once, when the first overload is acted on: at 5 000
        # connectors and 126 nodes over (a feeder each) every overload scanned the whole
        # site twice and the acting step held the loop 80 ms (s33-stall)
        everywhere = self._culprits(None, evidence)
        under: dict[int, list[ConnectorRef]] | None = None
        for overload in found:
            key = (overload.node, overload.unit)
            before = self._over.get(key)
            step = 0.05 * overload.limit if overload.unit == "W" else 1.0
            node = self.topology.node_ids.index(overload.node)
            culprits = [c for c in everywhere if node in self._ancestors(c[0].station_id)]
            known = all(ref in self.controller.overdraw_w for ref, _, _ in culprits)
            if before is not None and overload.margin <= before + step and known:
                current[key] = before      # acted on already: not again for the same margin
                continue
            if under is None:
                under = self._refs_under()
                yield
            yield from self._act(overload, draws, culprits, under.get(node, []))
            yield   # one overload acted on per step
        self._over = current
        self._disobeying(everywhere)
        return found

    def _refs_under(self) -> dict[int, list[ConnectorRef]]:
        """node -> the connectors under it (the declared ones in site order, then the
        undeclared ones seen)."""
        out: dict[int, list[ConnectorRef]] = {}
        for ref in [*self.topology.refs, *self.controller.state.undeclared]:
            for node in self._ancestors(ref.station_id):
                out.setdefault(node, []).append(ref)
        return out

    def _disobeying(self, everywhere: list[tuple]) -> None:
        """A connector measured over what its profiles allow is planned around before it
        takes a node over its limit: when the others ramp up, it would. `everywhere`: the
        site's culprits (`_culprits(None, ...)`)."""
        new = [c for c in everywhere if c[0] not in self.controller.overdraw_w]
        for ref, watts, allowed in new:
            log.warning("guard: %s/%s draws %.0f W, more than the %.0f W its profiles allow: "
                        "planned as a fixed load at its draw", ref.station_id, ref.connector_id,
                        watts, allowed)
            self.controller.set_overdraw(ref, watts)
        if new:
            self.controller.request_replan("guard:disobeying")

    def _culprits(self, overload: Overload | None, evidence: dict) -> list[tuple]:
        """(ref, W drawn, W allowed) of every connector under the node (None: the whole site)
        measured drawing clearly more than its profiles allowed, after its settle time.
        `evidence`: {ref: (W drawn, W allowed since its sample)} of the fresh samples taken
        under the profile in force (the kept ones that show it: guard_counts.py), in the
        site's order."""
        node = None if overload is None else self.topology.node_ids.index(overload.node)
        found = [(ref, watts, allowed) for ref, (watts, allowed) in evidence.items()
                 if watts > allowed + OVERDRAW_W
                 and (node is None or node in self._ancestors(ref.station_id))]
        return sorted(found, key=lambda c: self.topology.index(c[0]))

    def _act(self, overload: Overload, draws: dict, culprits: list[tuple],
             under: list[ConnectorRef]):
        """`under`: the connectors under the overloaded node (`_refs_under`). A generator: its
        line is built ACT_PER_STEP connectors a step, then logged and acted on."""
        self.overloads_seen += 1
        drawing: list[str] = []
        stale: list[str] = []
        for start in range(0, len(under), ACT_PER_STEP):
            if start:
                yield
            for r in under[start:start + ACT_PER_STEP]:
                watts, how = draws[r]
                if watts > 0:
                    drawing.append(f"{r.station_id}/{r.connector_id} {watts:.0f} W "
                                   f"{how} on {self._phases_text(r)}")
                if how == "stale":
                    stale.append(f"{r.station_id}/{r.connector_id}")
        log.warning("guard: %s over its limit by %.0f %s (measured %.0f, limit %.0f; %s); "
                    "not obeying: %s; stale meters counted at their maximum: %s",
                    overload.node, overload.margin, overload.unit, overload.load,
                    overload.limit, ", ".join(drawing),
                    ", ".join(f"{r.station_id}/{r.connector_id} draws {w:.0f} W, allowed "
                              f"{a:.0f} W" for r, w, a in culprits) or "none",
                    ", ".join(stale) or "none")
        for ref, watts, _ in culprits:
            self.controller.set_overdraw(ref, watts)
        self.controller.request_replan(f"guard:{overload.node}")

    def _phases_text(self, ref: ConnectorRef) -> str:
        if not self.topology.has(ref):
            return "undeclared connector (not in the site file)"
        return f"{self.controller.phase_use(ref)[0]} phase(s)"


def _run(steps):
    """Run one of the guard's generators to its end at once: its value."""
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value
