"""The guard keeps each connector's count from pass to pass and counts again only what changed
or whose moment came (site/guard_counts.py, s23-guard). Its node sums and verdicts must be
exactly what counting everything again gives: on random sites driven through random changes -
samples, sessions, phases learned, plans / idle shares / defaults accepted and dropped,
re-sends, station maxima, settle-time starts, a restart's answers, connectors the site file
does not list - and through time passing with no new input (meters going stale, young
sessions growing old, schedule edges, settle times ending), compared after every step with a
guard that counts everything from nothing, and with the loop the incremental pass replaced
(written out below as it was)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from smartcharge import events as ev
from smartcharge.clock import ManualClock
from smartcharge.model import Circuit, Connector, RateUnit, SessionDefaults, Site, Station
from smartcharge.ocpp.port import Installed
from smartcharge.site import undeclared
from smartcharge.site.controller import ControllerSettings, SiteController
from smartcharge.site.guard import SiteGuard, _run
from smartcharge.site.installed import InstalledLimits
from smartcharge.site.installed_restore import Restored
from smartcharge.site.station_control import StationControl
from smartcharge.site.watched import WatchedDict

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
STALE_S = 120.0
SETTLE_S = 30.0


def _site(rng: random.Random) -> Site:
    circuits = [Circuit("grid", None, limit_w=rng.uniform(30e3, 120e3),
                        limit_a=rng.choice([None, rng.uniform(60, 200)]))]
    for i in range(rng.randint(0, 3)):
        circuits.append(Circuit(f"c{i}", rng.choice(circuits).circuit_id,
                                limit_w=rng.choice([None, rng.uniform(10e3, 60e3)]),
                                limit_a=rng.choice([None, rng.uniform(20, 100)])))
    stations = []
    for s in range(rng.randint(2, 9)):
        connectors = tuple(Connector(c, phases=rng.choice([1, 3]),
                                     phase=rng.choice(["L1", "L2", "L3"]),
                                     max_current_a=rng.choice([16.0, 32.0]))
                           for c in range(1, rng.randint(1, 3) + 1))
        stations.append(Station(f"S{s}", rng.choice(circuits).circuit_id, connectors,
                                max_power_w=rng.choice([None, rng.uniform(7e3, 30e3)]),
                                max_current_a=rng.choice([None, rng.uniform(10, 40)]),
                                rate_unit=rng.choice([RateUnit.AMPS, RateUnit.WATTS]),
                                voltage_v=rng.choice([230.0, 240.0])))
    return Site(name="random", circuits=tuple(circuits), stations=tuple(stations),
                id_tags=frozenset({"T"}),
                session_defaults=SessionDefaults(energy_wh=30_000, dwell_s=4 * 3600))


def _profile(rng: random.Random, now: datetime, tx: int, default: bool = False) -> Installed:
    unit = rng.choice(["A", "W"])
    start = now + timedelta(seconds=rng.choice([-600, -30, -1, 0, 5, 40]))
    offsets = sorted({0, *(rng.randrange(1, 900) for _ in range(rng.randint(0, 3)))})
    top = 32.0 if unit == "A" else 22_000.0
    return Installed(transaction_id=tx, start=start,
                     expires=start + timedelta(seconds=rng.choice([60, 300, 1200, 10 ** 7])),
                     unit=unit, phases=rng.choice([1, 3]), starts_s=offsets,
                     limits=[round(rng.uniform(0, top), 1) for _ in offsets], default=default)


class World:
    """A controller without a server: its state, an installed view over StationControls (what
    dispatch keeps), a manual clock; random changes to every input of the guard's count."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.site = _site(rng)
        self.clock = ManualClock(T0)
        self.controller = c = SiteController(
            self.site, self.clock, ControllerSettings(stale_after_s=STALE_S,
                                                      guard_min_real_s=0.0))
        for station in self.site.stations:
            c.state.apply(ev.StationBooted(station.station_id, T0, True, "v", "m"))
        self.stations = WatchedDict({s.station_id: StationControl(s.station_id,
                                                                  str(s.rate_unit.value))
                                     for s in self.site.stations})
        c.installed = InstalledLimits(c.topology, c.state, c.phase_use, self.clock, SETTLE_S,
                                      self.stations)
        self.refs = list(c.topology.refs)
        self.tx = 100
        # most connectors start governed: a default accepted, a session, its plan, a sample
        # (the states where the installed schedule, settle times and evidence count)
        for ref in self.refs:
            control = self.stations[ref.station_id]
            if rng.random() < 0.8:
                control.default_layer[ref.connector_id] = _profile(rng, T0, 0, default=True)
            if rng.random() < 0.7:
                self.tx += 1
                c.state.apply(ev.SessionStarted(ref.station_id, ref.connector_id, self.tx,
                                                "T", 0.0, T0))
                control.sent[ref.connector_id] = _profile(rng, T0, self.tx)
                c.state.apply(ev.MeterSampled(ref.station_id, ref.connector_id, self.tx,
                                              T0 - timedelta(seconds=rng.choice([0, 60])),
                                              "Sample.Periodic",
                                              power_w=rng.uniform(0, 25_000), received_at=T0))

    def now(self) -> datetime:
        return self.clock.now()

    def step(self) -> str:
        rng, c, now = self.rng, self.controller, self.now()
        ref = rng.choice(self.refs)
        control = self.stations[ref.station_id]
        session = c.state.sessions.get(ref)
        kind = rng.choice(["sample", "sample", "sample", "phases", "start", "stop", "plan",
                           "plan", "idle", "default", "drop", "resend", "station_max",
                           "changed_at", "restored", "earlier", "undeclared", "time",
                           "time", "time", "edge"])
        if kind == "sample":
            power = rng.choice([0.0, -50.0, rng.uniform(0, 25_000), rng.uniform(0, 25_000)])
            at = now + timedelta(seconds=rng.choice([-300, -5, 0, 0, 90]))   # clocks differ
            c.on_event(ev.MeterSampled(ref.station_id, ref.connector_id,
                                       session.transaction_id if session else None, at,
                                       "Sample.Periodic", power_w=power,
                                       received_at=rng.choice([now, None])))
        elif kind == "phases" and session is not None:
            one = rng.choice([True, False])
            amps = tuple((rng.uniform(5, 30) if not one or p == rng.randrange(3) else 0.0)
                         for p in range(3))
            # (a late one too: its phases count, its draw does not replace a newer sample)
            at = now - timedelta(seconds=rng.choice([0, 0, 1000]))
            c.on_event(ev.MeterSampled(ref.station_id, ref.connector_id,
                                       session.transaction_id, at, "Sample.Periodic",
                                       current_a=amps, received_at=at))
        elif kind == "start":
            self.tx += 1
            c.on_event(ev.SessionStarted(ref.station_id, ref.connector_id, self.tx, "T", 0.0,
                                         now - timedelta(seconds=rng.choice([0, 10, 200]))))
        elif kind == "stop" and session is not None:
            c.on_event(ev.SessionStopped(ref.station_id, ref.connector_id,
                                         session.transaction_id, now, 1000.0, "Local"))
        elif kind == "plan":
            tx = session.transaction_id if session and rng.random() < 0.8 else 1
            control.sent[ref.connector_id] = _profile(rng, now, tx)
        elif kind == "idle":
            control.idle_layer[ref.connector_id] = _profile(rng, now, 0, default=True)
        elif kind == "default":
            control.default_layer[ref.connector_id] = _profile(rng, now, 0, default=True)
        elif kind == "drop":
            layer = rng.choice([control.sent, control.idle_layer, control.default_layer])
            if rng.random() < 0.2:
                layer.clear()
            else:
                layer.pop(ref.connector_id, None)
        elif kind == "resend":
            control.resend = not control.resend
        elif kind == "station_max":
            control.station_max = rng.choice([None, (rng.uniform(3e3, 25e3),
                                                      rng.uniform(5, 32))])
        elif kind == "changed_at":
            c.installed.changed_at[ref] = now - timedelta(seconds=rng.choice([0, 10, 100]))
        elif kind == "restored":
            if rng.random() < 0.3:
                c.installed.restored.by_ref.pop(ref, None)
            elif session is not None:
                # a transaction older than the process, no plan of ours: what it said counts
                if rng.random() < 0.3:
                    c.state.earlier_transactions_upto = self.tx
                if rng.random() < 0.5:
                    control.sent.pop(ref.connector_id, None)
                c.installed.restored.by_ref[ref] = Restored(
                    now, _profile(rng, now, 0), session.transaction_id)
        elif kind == "earlier":
            c.state.earlier_transactions_upto = rng.choice([0, self.tx - 1, self.tx])
        elif kind == "undeclared":
            station = rng.choice(self.site.stations)
            c.on_event(ev.MeterSampled(station.station_id, 9, None, now, "Sample.Periodic",
                                       power_w=rng.uniform(0, 11_000), received_at=now))
            if rng.random() < 0.5:
                self.tx += 1
                c.on_event(ev.SessionStarted(station.station_id, 9, self.tx, "T", 0.0, now))
        elif kind == "time":
            self.clock.moment = now + timedelta(seconds=rng.choice(
                [0.000001, 0.5, 3, 29, 31, 60, 121, 400]), microseconds=rng.randrange(3))
        elif kind == "edge":
            self._to_a_moment()
        return kind

    def _to_a_moment(self) -> None:
        """Time to exactly one of the moments a count may change at (or a microsecond after):
        a sample going stale, a schedule's edge, a settle time's end."""
        c, now = self.controller, self.now()
        moments = []
        for ref in self.refs:
            sample = c.state.measurements.get(ref)
            if sample is not None:
                moments.append(sample.arrived + timedelta(seconds=STALE_S))
            step = c.installed.step_of(ref)
            for moment, _ in step or ():
                moments += [moment, moment + timedelta(seconds=SETTLE_S)]
        later = sorted(m for m in moments if m > now)
        if later:
            self.clock.moment = later[0] + timedelta(microseconds=self.rng.choice([0, 1]))


def _compare(world: World, guard: SiteGuard, what: str) -> None:
    now = world.now()
    found, draws, culprits = _run(guard._overloads(now))
    fresh = SiteGuard(world.controller)
    found_0, draws_0, culprits_0 = _run(fresh._overloads(now))
    (w, a, _), _ = _run(guard._node_loads(now))
    (w0, a0, _), _ = _run(fresh._node_loads(now))
    assert np.array_equal(w, w0), (what, w, w0)
    assert np.array_equal(a, a0), (what, a, a0)
    assert dict(draws) == dict(draws_0), what
    assert dict(guard.counts.evidence) == dict(fresh.counts.evidence), what
    assert guard._culprits(None, culprits) == fresh._culprits(None, culprits_0), what
    assert found == found_0, (what, found, found_0)
    # and what the loop the incremental pass replaced summed, to the same floats
    lw, la = _loop_as_it_was(fresh, now)
    assert np.array_equal(w0, lw), (what, w0, lw)
    assert np.array_equal(a0, la), (what, a0, la)


@pytest.mark.parametrize("seed", range(40))
def test_the_kept_counts_are_what_counting_everything_again_gives(seed):
    world = World(seed)
    guard = world.controller.guard
    kinds = []
    for _ in range(160):
        kinds.append(world.step())
        _compare(world, guard, kinds[-8:])
    assert guard.counts.missed == 0


def test_time_alone_changes_the_counts_and_the_kept_ones_follow():
    """Samples then no input at all: meters go stale one by one, schedules step, settle times
    end - the incremental guard sees each at its moment, counting only those connectors."""
    world = World(1234)
    c, guard = world.controller, world.controller.guard
    rng = world.rng
    for ref in world.refs:
        world.tx += 1
        c.on_event(ev.SessionStarted(ref.station_id, ref.connector_id, world.tx, "T", 0.0,
                                     world.now()))
        control = world.stations[ref.station_id]
        control.default_layer[ref.connector_id] = _profile(rng, world.now(), 0, default=True)
        control.sent[ref.connector_id] = _profile(rng, world.now(), world.tx)
        world.clock.moment += timedelta(seconds=7)
        c.on_event(ev.MeterSampled(ref.station_id, ref.connector_id, world.tx, world.now(),
                                   "Sample.Periodic", power_w=rng.uniform(1e3, 2e4),
                                   received_at=world.now()))
    _compare(world, guard, "set up")
    before = guard.counts.recounted
    hows = set()
    for _ in range(60):
        world._to_a_moment()
        _compare(world, guard, "time only")
        hows |= {how for _, how in guard.counts.draws.values()}
    assert "stale" in hows and "fresh" in hows
    # it counted again what time changed, not every connector at every step
    assert guard.counts.recounted - before < 60 * len(world.refs) / 2
    assert guard.counts.missed == 0


def test_a_change_no_watcher_is_told_of_is_found_by_the_audit(caplog):
    """A path that changes an input without telling (here: a session's phases set by hand)
    leaves a kept count old until the audit pass, which counts everything again, logs it and
    uses the right count."""
    world = World(0)
    c, guard = world.controller, world.controller.guard
    ref = next(r for r in world.refs if c.topology.connector(r).phases == 3)
    c.on_event(ev.SessionStarted(ref.station_id, ref.connector_id, 500, "T", 0.0, world.now()))
    c.on_event(ev.MeterSampled(ref.station_id, ref.connector_id, 500, world.now(),
                               "Sample.Periodic", power_w=9_000.0, received_at=world.now()))
    _run(guard._overloads(world.now()))
    session = c.state.sessions[ref]
    session.phases_in_use, session.station_phase = 1, 2        # not through the state
    guard.audit_next()
    _run(guard._overloads(world.now()))
    assert guard.counts.missed == 1
    assert any("does not tell" in r.getMessage() for r in caplog.records)
    _compare(world, guard, "after the audit")
    # the controller's audit goes round the site a slice per pass (here: all of it at once)
    session.phases_in_use, session.station_phase = 3, None
    guard.counts.audit_period_s = 1e-9
    _run(guard._overloads(world.now()))
    assert guard.counts.missed == 2
    _compare(world, guard, "after the rolling audit")


def test_a_pass_that_fails_half_way_loses_nothing():
    """The changes a pass was told of are taken when it starts: one that fails (or is
    cancelled) half-way has the next pass count everything."""
    world = World(3)
    c, guard = world.controller, world.controller.guard
    _run(guard._overloads(world.now()))
    ref = world.refs[-1]
    world.tx += 1
    # (into the state: the controller's own pass on a sample would take the change first)
    c.state.apply(ev.SessionStarted(ref.station_id, ref.connector_id, world.tx, "T", 0.0,
                                    world.now()))
    c.state.apply(ev.MeterSampled(ref.station_id, ref.connector_id, world.tx, world.now(),
                                  "Sample.Periodic", power_w=17_000.0, received_at=world.now()))
    assess = guard._assess

    def failing(r, now):
        raise RuntimeError("a bug while counting")

    guard._assess = failing
    with pytest.raises(RuntimeError):
        _run(guard._overloads(world.now()))
    guard._assess = assess
    _compare(world, guard, "after a failed pass")
    assert guard.counts.draws[ref] == (17_000.0, "fresh")


def _loop_as_it_was(guard: SiteGuard, now: datetime) -> tuple[np.ndarray, np.ndarray]:
    """The node sums as the guard made them before s23-guard: every connector, in order."""
    topo, c = guard.topology, guard.controller
    load_w = [0.0] * topo.n_nodes
    load_a = [[0.0, 0.0, 0.0] for _ in range(topo.n_nodes)]
    estimated: dict[str, list] = {}
    for ref in topo.refs:
        watts, how, _, _ = guard._assess(ref, now)
        if watts <= 0:
            continue
        # each connector's phases and A as the guard counts them (a car of unknown phases at
        # the most it may put on one phase: s33-phases); the sums are what this loop checks
        used, amps = guard._phases_and_amps(ref, watts, how)
        if how != "fresh":
            estimated.setdefault(ref.station_id, []).append((watts, used, amps))
        for node in guard._ancestors(ref.station_id):
            load_w[node] += watts
            for p in used:
                load_a[node][p] += amps
    for ref in list(c.state.undeclared):
        watts, how = undeclared.draw_w(c.state, topo, ref, now, c.settings.stale_after_s)
        if watts <= 0:
            continue
        amps = undeclared.amps(topo, ref, watts)
        if how != "fresh":
            estimated.setdefault(ref.station_id, []).append((watts, (0, 1, 2), amps))
        for node in guard._ancestors(ref.station_id):
            load_w[node] += watts
            for p in range(3):
                load_a[node][p] += amps
    for station_id, rows in estimated.items():
        control = c.installed.stations.get(station_id) if c.installed else None
        cap = control.station_max if control is not None else None
        if cap is None:
            continue
        sn = guard._ancestors(station_id)[0]
        est_w = sum(w for w, _, _ in rows)
        cut_w = min(est_w, max(0.0, load_w[sn] - max(cap[0], load_w[sn] - est_w)))
        cut_a = [0.0, 0.0, 0.0]
        for p in range(3):
            est_a = sum(a for _, used, a in rows if p in used)
            cut_a[p] = min(est_a, max(0.0, load_a[sn][p] - max(cap[1], load_a[sn][p] - est_a)))
        for node in guard._ancestors(station_id):
            load_w[node] -= cut_w
            for p in range(3):
                load_a[node][p] -= cut_a[p]
    return np.array(load_w), np.array(load_a).reshape(topo.n_nodes, 3)


def test_a_pass_told_of_many_changes_gives_the_loop_back_while_it_sorts_them(monkeypatch):
    """The changes a pass was told of are turned into connector indices a slice per step of
    the pass, not all in its first step: at 10 000 connectors every one told changed (a
    dispatch round, every meter) made that first step 20-36 ms of the loop's CPU (s31-p99).
    The counts are the same as counting everything again. (A small site, a small slice.)"""
    from smartcharge.site import guard_counts
    monkeypatch.setattr(guard_counts, "LOOKUPS_PER_STEP", 4, raising=False)

    class CountingIndex(dict):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.looked_up = 0

        def get(self, key, default=None):
            self.looked_up += 1
            return super().get(key, default)

    world = next(w for w in map(World, range(100)) if len(w.refs) >= 12)
    c, guard = world.controller, world.controller.guard
    _run(guard._overloads(world.now()))       # the first pass counts everything
    index = c.topology._index = CountingIndex(c.topology._index)
    for ref in world.refs:      # every connector told changed
        world.tx += 1
        c.state.apply(ev.SessionStarted(ref.station_id, ref.connector_id, world.tx, "T", 0.0,
                                        world.now()))
        c.state.apply(ev.MeterSampled(ref.station_id, ref.connector_id, world.tx, world.now(),
                                      "Sample.Periodic", power_w=1_000.0,
                                      received_at=world.now()))
    assert len(guard.counts._dirty_refs) == len(world.refs)
    per_step, before = [], 0
    steps = guard._check(world.now())
    while True:
        try:
            next(steps)
        except StopIteration:
            break
        finally:
            per_step.append(index.looked_up - before)
            before = index.looked_up
    assert sum(per_step) >= len(world.refs)
    assert max(per_step) <= 4, per_step
    _compare(world, guard, "after many changes")
