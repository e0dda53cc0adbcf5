"""What the profiles installed in simulated stations allow, summed under every node of the site.

The stations' own view (`sim.profiles.ProfileStore`), not smartcharge's: a connector's limit at
an instant is its composite limit for the transaction it runs (or, idle, for a car that would
arrive: TxDefault), and a connector no profile limits counts at its maximum. Used to check, at
every profile a station installs and over the next hours, that whatever is installed keeps
every node under its limit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from smartcharge.site import steps
from smartcharge.site.topology import ConnectorRef, SiteTopology


def connector_limit_w(station, connector_id: int, at: datetime, *,
                      assume_phases: int | None = None) -> tuple[float, int]:
    """(limit [W], phases in use) of one simulated connector at `at`."""
    state = station.connectors[connector_id]
    phases = station._phases_in_use(state) if assume_phases is None else assume_phases
    tx = state.transaction.context() if state.transaction else None
    limit = station.profiles.limit_w(connector_id, at, tx, voltage_v=station.spec.voltage_v,
                                     phases_in_use=phases)
    maximum = state.spec.max_current_a * station.spec.voltage_v * phases
    return (maximum if limit is None else min(limit, maximum)), phases


def node_loads(site, fleet, limits, at: datetime) -> list[tuple[str, float, float]]:
    """(what, summed installed limit, the node's limit) for every node at `at`: W and the
    highest phase's A. `limits` is the controller's SiteLimits (operator caps and DR events, on the
    grid connection and on circuits)."""
    topo = SiteTopology(site)
    load_w = np.zeros(topo.n_nodes)
    load_a = np.zeros((topo.n_nodes, 3))
    for ref in topo.refs:
        station = fleet.station(ref.station_id)
        # `at` is ours; a station reads its profiles by its own clock (a station ahead holds
        # the times it was sent moved onto its clock: read at ours, they were not in force yet)
        limit_w, phases = connector_limit_w(station, ref.connector_id, at + _ahead(station))
        if limit_w <= 0:
            continue
        amps = limit_w / (station.spec.voltage_v * phases)
        if topo.connector(ref).phases == 1:
            used = [topo.phase_index(ref)]
        else:
            used = [topo.site_phase(ref, k) for k in range(phases)]
        for node in topo.ancestors(topo.station_node[ref.station_id]):
            load_w[node] += limit_w
            for p in used:
                load_a[node, p] += amps
    root_w, _ = limits.effective_root_limit_w([at], [at + timedelta(seconds=1)])
    out = []
    for node in range(topo.n_nodes):
        cap_w = topo.static_limit_w[node]
        if node == 0:
            cap_w = min(cap_w, float(root_w[0]))
        elif topo.node_ids[node] in limits.circuits_limited():   # a DR event on a circuit
            event_w, _ = limits.circuit_limit_w(topo.node_ids[node], [at],
                                                [at + timedelta(seconds=1)])
            cap_w = min(cap_w, float(event_w[0]))
        out.append((f"{topo.node_ids[node]} W", float(load_w[node]), float(cap_w)))
        out.append((f"{topo.node_ids[node]} A", float(load_a[node].max()),
                    float(topo.static_limit_a[node])))
    return out


def node_excesses(site, fleet, limits, at: datetime, *, tol: float = 1.0) -> list[str]:
    """Every node whose summed installed limits at `at` exceed its limit (W, or A per phase)."""
    return [f"{at:%H:%M:%S} {what}: {load:.1f} > {cap:.1f}"
            for what, load, cap in node_loads(site, fleet, limits, at) if load > cap + tol]


def forecast_excesses(site, fleet, limits, start: datetime, hours: float = 3.0,
                      step_s: float = 20.0) -> list[str]:
    """Node excesses at many instants from `start` on, as if smartcharge vanished at `start`
    (the installed profiles run out, stations fall back to their defaults)."""
    out = []
    moments = [start + timedelta(seconds=step_s * k)
               for k in range(int(hours * 3600 / step_s) + 1)]
    for moment in moments:
        out.extend(node_excesses(site, fleet, limits, moment))
    return out


def change_moments(fleet, since: datetime, until: datetime) -> list[datetime]:
    """Every moment in (since, until] where a profile installed in a simulated station may
    change what a connector may draw (a period's start, a schedule's end, a validity bound)."""
    from smartcharge.sim.profiles import _breakpoints

    out: set[datetime] = set()
    for station in fleet.stations.values():
        contexts = station._tx_contexts()
        ahead = _ahead(station)   # its breakpoints are on its clock, the moments on ours
        for profile in station.profiles.profiles:
            tx = contexts.get(profile.connector_id) if profile.connector_id else None
            out.update(m - ahead for m in _breakpoints(profile, since + ahead, until + ahead, tx))
    return sorted(out)


def _ahead(station) -> timedelta:
    """How far a simulated station's own clock runs ahead of ours (`StationSpec.clock_offset_s`)."""
    return timedelta(seconds=station.spec.clock_offset_s)


class InstallWatch:
    """Checks the node sums right after every profile any station installs or clears: now,
    none over its limit; at the given later moments (a coming DR event), no profile raises a
    node that is over its limit there (the decreases that bring it under go out one by one).
    `ahead_s`: the later moments are every moment an installed schedule changes until that
    much later - a plan's slot edges, a schedule's end - whatever was installed."""

    def __init__(self, site, fleet, limits, clock, *, moments: tuple[datetime, ...] = (),
                 zero_notice: bool = False, ahead_s: float | None = None,
                 in_force: Callable[[datetime], bool] | None = None):
        """`zero_notice`: a limit may be lowered under what is installed now (an operator's
        cap at once): a node may be over it until the decreases are in, but no install may
        raise a node that is over its limit, and one under it may not go over (the
        installs under `met_at`: the first one with every node under its limit).
        `in_force(now)`: whether the lowered limit is in force yet; `met_at` counts only
        installs from then on (one landing while the request is in flight is under the old
        limit, and would start the grace before the decreases went out)."""
        self.site, self.fleet, self.limits, self.clock = site, fleet, limits, clock
        self.moments = moments
        self.ahead_s = ahead_s
        self._ahead: list[tuple[datetime, list]] = []   # (moment, node sums) before an install
        self.zero_notice = zero_notice
        self.in_force = in_force
        self.installs = 0
        self.excesses: list[str] = []
        self.met_at: datetime | None = None
        self._last = {m: node_loads(site, fleet, limits, m) for m in moments}
        self._before: tuple[datetime, list] | None = None
        for station in fleet.stations.values():
            station.on_profiles_changing = self._changing
            station.on_profiles_changed = self._changed

    def _changing(self, station) -> None:
        # the node sums just before this install, at the instant it happens: comparing with
        # the sums at the install before would count a step the installed schedules take in
        # between (a plan's later slot) as this install's raise
        now = self.clock.now()
        self._before = (now, node_loads(self.site, self.fleet, self.limits, now))
        if self.ahead_s is not None:
            until = now + timedelta(seconds=self.ahead_s)
            self._ahead = [(m, node_loads(self.site, self.fleet, self.limits, m))
                           for m in change_moments(self.fleet, now, until)]

    def _changed(self, station) -> None:
        self.installs += 1
        now = self.clock.now()
        if not self.zero_notice:
            self.excesses.extend(node_excesses(self.site, self.fleet, self.limits, now))
        else:
            at, before_loads = self._before
            loads = node_loads(self.site, self.fleet, self.limits, at)
            for (what, load, cap), (_, before, _) in zip(loads, before_loads):
                if load > cap + 1.0 and load > before + 1.0:
                    self.excesses.append(f"{at:%H:%M:%S} {what}: raised {before:.1f} -> "
                                         f"{load:.1f} > {cap:.1f} by {station.spec.station_id}")
            if (self.met_at is None and (self.in_force is None or self.in_force(now))
                    and all(load <= cap + 1.0 for _, load, cap in
                            node_loads(self.site, self.fleet, self.limits, now))):
                self.met_at = now
        if self.ahead_s is not None:
            self._check_ahead(station, now)
        for moment in self.moments:
            loads = node_loads(self.site, self.fleet, self.limits, moment)
            for (what, load, cap), (_, before, _) in zip(loads, self._last[moment]):
                if load > cap + 1.0 and load > before + 1.0:
                    self.excesses.append(f"{moment:%H:%M:%S} {what}: raised {before:.1f} -> "
                                         f"{load:.1f} > {cap:.1f}")
            self._last[moment] = loads


    def _check_ahead(self, station, now: datetime) -> None:
        """At every later moment a schedule changes, before this install or after it: no node
        over its limit that this install raised (before it, the sums were constant from one
        change moment to the next)."""
        at, before_now = self._before
        until = now + timedelta(seconds=self.ahead_s)
        moments = sorted({m for m, _ in self._ahead} | set(change_moments(self.fleet, now, until)))
        for moment in moments:
            earlier = [loads for m, loads in self._ahead if m <= moment]
            before = earlier[-1] if earlier else before_now
            loads = node_loads(self.site, self.fleet, self.limits, moment)
            for (what, load, cap), (_, was, _) in zip(loads, before):
                if load > cap + 1.0 and load > was + 1.0:
                    self.excesses.append(f"{moment:%H:%M:%S} {what}: raised {was:.1f} -> "
                                         f"{load:.1f} > {cap:.1f} by "
                                         f"{station.spec.station_id} at {now:%H:%M:%S}")


def refs_of(site) -> list[ConnectorRef]:
    return SiteTopology(site).refs


def stored_default_w(db_path, ref: ConnectorRef, at: datetime) -> float | None:
    """What the SQLite file's `failsafe_held` says the connector's fail-safe default may be at
    `at` (read beside the running server, as any reader of the file); None: no record."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT steps_json FROM failsafe_held WHERE station_id = ? AND "
                         "connector_id = ?", (ref.station_id, ref.connector_id)).fetchone()
    finally:
        db.close()
    if row is None:
        return None
    return steps.value_at([(datetime.fromisoformat(m), w) for m, w in json.loads(row[0])], at)
