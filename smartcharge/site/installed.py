"""What a connector may draw under the profiles its station accepted, over time, as steps in
the plan's W: the plan until it ends, then the idle schedule (an idle share), then
the fail-safe default. Dispatch compares plans with it interval by interval; the controller plans
a connector it cannot control at its maximum; the guard checks meters against it.

One object, owned by dispatch (which records what stations accept in `stations` and
`changed_at`) and read by the controller and the guard: a read-only view, so the controller never
holds the dispatcher itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from smartcharge import units
from smartcharge.clock import Clock
from smartcharge.site import steps
from smartcharge.site.installed_restore import RestoredLayers, bounded
from smartcharge.site.plan import ConnectorPlan
from smartcharge.site.station_control import Sent, StationControl
from smartcharge.site.state import SiteState
from smartcharge.site.topology import ConnectorRef, SiteTopology
from smartcharge.site.watched import WatchedDict


def w_factor(topology: SiteTopology, unit: str, ref: ConnectorRef, phases: int,
             phases_known: bool) -> float:
    """What a limit in `unit` is multiplied by so no phase can be overloaded. A single-phase
    car on a 3-phase connector under a W limit draws it all on one phase: 3x the per-phase
    current a balanced plan reserved. While the car's phase use is unknown (and a per-phase
    current limit holds above the connector) the W limit is the balanced plan's per-phase
    share, a third; an A limit is per phase already and needs nothing - unless the site file
    addresses the station in W: the planner then plans such a car on what it is sent (its
    third: `planned_share`), and a three-phase car sent the balanced plan's A on every phase
    would draw three times that in all (a W station the port falls back to A for)."""
    if phases_known or phases != 3:
        return 1.0
    # the rest is the site's wiring, fixed: once per (connector, W or not) - asked ~10 times
    # per connector in a DR round (schedules, comparisons, idle shares, defaults; issue 10)
    key = (ref.station_id, ref.connector_id, unit == "W")   # (a ConnectorRef hashes slowly)
    known = topology.w_factors.get(key)
    if known is None:
        known = topology.w_factors[key] = _wired_w_factor(topology, unit, ref)
    return known


def _wired_w_factor(topology: SiteTopology, unit: str, ref: ConnectorRef) -> float:
    """`w_factor` of a car of unknown phases planned on three phases."""
    if topology.connector(ref).phases != 3:
        return 1.0
    if unit != "W" and str(topology.station(ref.station_id).rate_unit.value) != "W":
        return 1.0
    return 1.0 / 3.0 if topology.phase_limited(ref) else 1.0


def planned_share(topology: SiteTopology, ref: ConnectorRef, phases: int,
                  phases_known: bool) -> float:
    """The share of its plan's W a connector's car may draw in all, which the planner counts
    against every W limit (site/planner.py): a third while `w_factor` sends it a third in
    every unit, else all of it."""
    return w_factor(topology, "A", ref, phases, phases_known)


class InstalledLimits:
    def __init__(self, topology: SiteTopology, state: SiteState,
                 phase_use: Callable[[ConnectorRef], tuple], clock: Clock, settle_s: float,
                 stations: dict[str, StationControl]) -> None:
        self.topology = topology
        self.state = state
        self.phase_use = phase_use
        self.clock = clock
        self.settle_s = settle_s
        self.stations = stations
        # a station's voltage by id (the site file's): looked up ~11 000 times in a DR round at
        # 1 000 connectors through the site's station (issue 10)
        self._voltage_v = {s.station_id: s.voltage_v for s in topology.site.stations}
        # last accepted profile change (watched: the guard's counts depend on it)
        self.changed_at: dict[ConnectorRef, datetime] = WatchedDict()
        self.restored = RestoredLayers(state)   # what their stations said they apply
        # ref -> (what its `step_of` was made of, the step): see step_of
        self._steps_kept: dict[ConnectorRef, tuple[tuple, steps.Step]] = {}

    def w_factor(self, unit: str, ref: ConnectorRef, phases: int, phases_known: bool) -> float:
        return w_factor(self.topology, unit, ref, phases, phases_known)

    def told_w(self, ref: ConnectorRef, allocated_w: float, phases: int,
               phases_known: bool) -> float:
        """What a connector's station was told for an allocation (a third in W while its
        phases are unknown)."""
        control = self.stations.get(ref.station_id)
        unit = control.unit if control is not None else "A"
        return allocated_w * self.w_factor(unit, ref, phases, phases_known)

    def phases_and_factor(self, control: StationControl, cplan: ConnectorPlan) -> tuple[int, float]:
        connector = self.topology.connector(cplan.ref)
        phases = min(cplan.phases, connector.phases)
        return phases, self.w_factor(control.unit, cplan.ref, phases, cplan.phases_known)

    def sent_steps(self, sent: Sent, phases: int, factor: float, ref: ConnectorRef) -> steps.Step:
        """A profile's limits as the plan's W (what the car may draw on `phases`, undoing the
        W factor dispatch applied). Kept on the profile for the last (phases, factor,
        voltage) asked (`Installed` is frozen: never changed once made): a round asked ~16
        times per connector - comparisons, schedules, idle shares, the guard - ~7 % of the
        event loop's CPU in a DR event at 1 000 connectors (issue 10). The list is shared:
        read it only."""
        voltage = self._voltage_v.get(ref.station_id)
        if voltage is None:
            voltage = self.topology.station(ref.station_id).voltage_v
        key = (phases, factor, voltage)
        kept = sent.__dict__.get("_steps_kept")
        if kept is not None and kept[0] == key:
            return kept[1]
        out = [(sent.start + timedelta(seconds=s),
                units.rate_to_w(limit, sent.unit, phases, voltage) / factor)
               for s, limit in zip(sent.starts_s, sent.limits)]
        sent.__dict__["_steps_kept"] = (key, out)
        return out

    def below_steps(self, control: StationControl, ref: ConnectorRef, phases: int, factor: float,
                 replaces_idle: bool) -> steps.Step | None:
        """What a connector falls back to when its plan ends: the idle schedule (idle
        share), then the fail-safe default; unknown defaults count as its maximum."""
        default = control.default_layer.get(ref.connector_id)
        if default is None:
            step = [(datetime.min.replace(tzinfo=UTC), self.topology.max_power_w(ref) / factor)]
        else:
            step = self.sent_steps(default, phases, factor, ref)
        idle = control.idle_layer.get(ref.connector_id)
        if idle is not None and not replaces_idle:
            step = steps.overlay(self.sent_steps(idle, phases, factor, ref), idle.expires, step)
        return step

    def installed_steps(self, control: StationControl, ref: ConnectorRef, phases: int,
                     factor: float, transaction_id: int | None,
                     below: steps.Step | None = None, *, upper: bool = False) -> steps.Step:
        """`below`: its `below_steps(..., False)` when the caller has them (this turn).
        `upper`: where it is not known which of two the station applies (after a restart,
        installed_restore.bounded), the higher - what it may draw; else the lower - what a
        change is judged a raise against."""
        if below is None:
            below = self.below_steps(control, ref, phases, factor, False)
        old = control.sent.get(ref.connector_id)
        if old is None or old.transaction_id != transaction_id:
            if self.unknown_tx(ref, transaction_id):
                # a transaction older than this process: the station may run a plan an
                # earlier process sent - what it said it applies (installed_restore.py),
                # else (until it ends, which we do not know) anything from 0 W (an old
                # pause: a change is judged a raise against it, so a plan goes out as its
                # decrease to 0 first, then in full after the others' decreases) to its
                # maximum (what it may draw: a decrease against it goes out at once).
                # Counted at its maximum alone, a station that could not say had a raise
                # sent as a "decrease" before another car's decrease: 27.6 kW under 13.8
                told = self.restored.for_session(ref, self.state.sessions.get(ref))
                if told is not None:
                    return bounded(steps.overlay(self.sent_steps(told, phases, factor, ref),
                                                 told.expires, below), below, upper=upper)
                return [(datetime.min.replace(tzinfo=UTC),
                         self.topology.max_power_w(ref) / factor if upper else 0.0)]
            return below
        return steps.overlay(self.sent_steps(old, phases, factor, ref), old.expires, below)

    def judged(self, control: StationControl, ref: ConnectorRef, phases: int, factor: float,
               transaction_id: int | None, installed: steps.Step, wanted: steps.Step,
               now: datetime) -> tuple[bool, bool]:
        """(lowers somewhere, raises somewhere): `wanted` against `installed` (the lower
        bound). After a restart, where the station may apply either what it said or what this
        process installed under it since (installed_restore.bounded), a decrease is judged
        against the higher: a car an old TxProfile still runs high is lowered with the
        decreases, never left there as "no change"."""
        lowers, raises = steps.compare(installed, wanted, now)
        old = control.sent.get(ref.connector_id)
        if not lowers and (old is None or old.transaction_id != transaction_id) \
                and self.unknown_tx(ref, transaction_id):
            upper = self.installed_steps(control, ref, phases, factor, transaction_id,
                                         upper=True)
            lowers = steps.compare(upper, wanted, now)[0]
        return lowers, raises

    def unknown_tx(self, ref: ConnectorRef, transaction_id: int | None) -> bool:
        """The connector's running transaction was started before this process (its id was
        given by then: the store's ids only grow): it may run profiles an earlier process sent.
        Not by the station's start time: a station whose clock is behind ours stamps a new
        transaction before our start (the load benchmark's stations: 4 529 of 5 000 were
        asked about and counted at their maximum), and a session a boot closed before the
        restart, reopened since, is an earlier process's whatever its stamp."""
        session = self.state.sessions.get(ref)
        return (transaction_id is not None and session is not None
                and session.transaction_id == transaction_id
                and transaction_id <= self.state.earlier_transactions_upto)

    def governs(self, ref: ConnectorRef) -> bool:
        """True when a profile we sent (and the station accepted) for the connector's running
        transaction is what limits it. Otherwise - a new transaction, or after a restart or a
        reconnect, when the station may still run profiles we do not know - its draw proves
        nothing about obedience."""
        control = self.stations.get(ref.station_id)
        return control is not None and not control.resend and self.ours(ref)

    def ours(self, ref: ConnectorRef) -> bool:
        """`governs` but for a station whose plans are being sent again (`resend`: set up
        again after a reconnect, or an ISO 15118 car's needs arrived): what it accepted for
        the running transaction is known, though it may have lost its plan in a set-up."""
        control = self.stations.get(ref.station_id)
        session = self.state.sessions.get(ref)
        if control is None or session is None:
            return False
        sent = control.sent.get(ref.connector_id)
        if sent is not None:
            return sent.transaction_id == session.transaction_id
        return not self.unknown_tx(ref, session.transaction_id)

    def step_of(self, ref: ConnectorRef) -> steps.Step | None:
        """`current_step` of a connector whose station accepted a fail-safe default (None:
        none known): asked once and handed to `followed_since` and `installed_w`, which the
        guard asks both for each connector of every pass (issue 10). Kept per connector with
        everything it is made of - the three layers' profiles (frozen once accepted), the
        running transaction, whether it is older than us, the phases it is counted on - and
        made again only when one of them changed: the guard's pass asks it of every
        connector every few hundred ms, and building it was a fifth of the pass (s22-msgcost).
        The list is shared: read it only."""
        control = self.stations.get(ref.station_id)
        if control is None:
            return None
        connector_id = ref.connector_id
        default = control.default_layer.get(connector_id)
        if default is None:
            return None
        session = self.state.sessions.get(ref)
        transaction_id = session.transaction_id if session is not None else None
        phases = self.phase_use(ref)[0]
        key = (default, control.idle_layer.get(connector_id), control.sent.get(connector_id),
               transaction_id, self.unknown_tx(ref, transaction_id), phases,
               self.restored.by_ref.get(ref))   # what its station said after a restart
        kept = self._steps_kept.get(ref)
        if kept is not None and kept[0] == key:
            return kept[1]
        step = self._current_step(control, ref, phases, transaction_id)
        self._steps_kept[ref] = (key, step)
        return step

    def followed_since(self, ref: ConnectorRef, step: steps.Step | None = None
                       ) -> datetime | None:
        """From when a car had its settle time under the limit in force now: after the last
        accepted profile and the last step of the installed schedule (a DR window beginning).
        `step`: its `step_of`, if asked already."""
        changed = self.changed_at.get(ref)
        moments = [] if changed is None else [changed]
        if step is None:
            step = self.step_of(ref)
        if step is not None:
            now = self.clock.now()
            moments += [m for m, _ in step if m <= now][-1:]
        if not moments:
            return None
        return max(moments) + timedelta(seconds=self.settle_s)

    def current_step(self, control: StationControl, ref: ConnectorRef) -> steps.Step:
        session = self.state.sessions.get(ref)
        return self._current_step(control, ref, self.phase_use(ref)[0],
                                  session.transaction_id if session else None)

    def _current_step(self, control: StationControl, ref: ConnectorRef, phases: int,
                      transaction_id: int | None) -> steps.Step:
        step = self.installed_steps(control, ref, phases, 1.0, transaction_id, upper=True)
        out: steps.Step = []
        for moment, value in step:     # only the moments where the value changes
            if not out or out[-1][1] != value:
                out.append((moment, value))
        return out

    def installed_w(self, ref: ConnectorRef, since: datetime | None = None,
                    step: steps.Step | None = None) -> float | None:
        """The most a connector's accepted profiles let it draw [W] from `since` (its settle
        time before) until now (None: unknown). `step`: its `step_of`, if asked already."""
        if step is None:
            step = self.step_of(ref)
        if step is None:
            return None
        now = self.clock.now()
        since = now if since is None else min(since, now)
        since -= timedelta(seconds=self.settle_s)
        most = max(steps.value_at(step, m) for m in steps.moments(step, since=since) if m <= now)
        return min(most, self.topology.max_power_w(ref))

    def next_change(self, step: steps.Step | None, now: datetime,
                    since: datetime | None = None) -> datetime | None:
        """The first moment after `now` from which `installed_w`, `followed_since` and
        `followed_w` of a connector whose `step_of` is `step` may answer otherwise with nothing
        accepted since (None: never): an edge of the step (a new value in force, a new last
        edge) and the end of the settle time after one (a value out of the look-back), and
        `since` while it is ahead of the clock (a sample stamped ahead of ours: until then the
        look-back moves with now). Early is harmless - the same answer is made again - late is
        not (the guard keeps its count of a connector until then: guard_counts.py)."""
        if step is None:
            return None
        now = min(now, self.clock.now())
        best = since if since is not None and since > now else None
        return _next_edge(step, now, timedelta(seconds=self.settle_s), best)

    def fallback_change(self, ref: ConnectorRef, now: datetime) -> datetime | None:
        """`next_change` of `fallback_w`: the edges of what it falls back to, both ways."""
        control = self.stations.get(ref.station_id)
        if control is None or ref.connector_id not in control.default_layer:
            return None
        phases = self.phase_use(ref)[0]
        now = min(now, self.clock.now())
        settle = timedelta(seconds=self.settle_s)
        best = None
        for replaces_idle in (False, True):
            best = _next_edge(self.below_steps(control, ref, phases, 1.0, replaces_idle), now,
                              settle, best)
        return best

    def fallback_w(self, ref: ConnectorRef) -> float | None:
        """The most a connector may draw from its settle time before until now on what it
        falls back to without its plan: its idle share over its fail-safe default, or the
        default alone (a station set up again may have lost both its plan and its idle
        share). None: no fail-safe default known accepted."""
        control = self.stations.get(ref.station_id)
        if control is None or ref.connector_id not in control.default_layer:
            return None
        phases = self.phase_use(ref)[0]
        now = self.clock.now()
        since = now - timedelta(seconds=self.settle_s)
        most = 0.0
        for replaces_idle in (False, True):
            step = self.below_steps(control, ref, phases, 1.0, replaces_idle)
            most = max(most, *(steps.value_at(step, m)
                               for m in steps.moments(step, since=since) if m <= now))
        return min(most, self.topology.max_power_w(ref))

    def followed_w(self, ref: ConnectorRef, at: datetime) -> float | None:
        """What a connector's accepted profiles let it draw at `at` [W as told], if the car had
        its settle time under them by then (None: it had not, or one we did not send may limit
        it; a station that accepted none: its maximum). A car sampled under less than its plan - the profile not
        yet sent, accepted or settled - is not one that takes less than it was given (the
        closed loop, controller.py)."""
        control = self.stations.get(ref.station_id)
        if control is None or not self.governs(ref):
            return None
        kept = self.step_of(ref)   # asked of every meter sample: the kept step when there is one
        since = self.followed_since(ref, kept)
        if since is not None and since > at:
            return None     # sampled while still following a change: it proves nothing
        # (since None: it never accepted a profile - its maximum, as ever)
        step = kept if kept is not None else self.current_step(control, ref)
        return min(steps.value_at(step, at), self.topology.max_power_w(ref))

    def installed_max_w(self, ref: ConnectorRef) -> float | None:
        """The most a connector may draw from now on under what it has accepted (None: no
        profile known accepted): what a connector that stopped obeying us is planned at."""
        control = self.stations.get(ref.station_id)
        if control is None or ref.connector_id not in control.default_layer:
            return None
        session = self.state.sessions.get(ref)
        phases = self.topology.connector(ref).phases
        step = self.installed_steps(control, ref, phases, 1.0,
                                 session.transaction_id if session else None, upper=True)
        return min(steps.maximum(step, self.clock.now()), self.topology.max_power_w(ref))


    def boot_closed_max_w(self, session) -> float:
        """The most the connector of a session a station's boot closed may draw from now on,
        if the station kept the transaction (the session is reopened by its next message):
        what a plan of ours for that transaction allows, or what the station said it applies
        for it after a restart, over what lies below; nothing known: its maximum."""
        ref = session.ref
        maximum_w = self.topology.max_power_w(ref)
        control = self.stations.get(ref.station_id)
        if control is None or ref.connector_id not in control.default_layer:
            return maximum_w
        phases = self.topology.connector(ref).phases
        below = self.below_steps(control, ref, phases, 1.0, False)
        old = control.sent.get(ref.connector_id)
        if old is not None and old.transaction_id == session.transaction_id:
            step = steps.overlay(self.sent_steps(old, phases, 1.0, ref), old.expires, below)
        elif session.transaction_id <= self.state.earlier_transactions_upto:
            told = self.restored.for_session(ref, session)
            if told is None:
                return maximum_w
            step = bounded(steps.overlay(self.sent_steps(told, phases, 1.0, ref), told.expires,
                                         below), below, upper=True)
        else:
            step = below
        return min(steps.maximum(step, self.clock.now()), maximum_w)


def _next_edge(step: steps.Step, now: datetime, settle: timedelta,
               best: datetime | None) -> datetime | None:
    """The earliest of `best` and every edge of `step`, and every edge + `settle`, after now."""
    for moment, _ in step:
        if moment > now:
            candidate = moment            # (its settle time ends later still)
        else:
            candidate = moment + settle
            if candidate <= now:
                continue
        if best is None or candidate < best:
            best = candidate
    return best
