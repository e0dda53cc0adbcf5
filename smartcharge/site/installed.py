"""What a connector may draw under the profiles its station accepted, over time, as steps in
the plan's W: the TxProfile until it ends, then the stack-1 TxDefaultProfile (an idle share), then
the fail-safe default. Dispatch compares plans with it interval by interval; the controller plans
a connector it cannot control at its maximum; the guard checks meters against it.

A mixin of `Dispatcher` (needs `stations`, `topology`, `view`, `clock`, `settings`,
`changed_at`, `started_at`, `w_factor`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smartcharge import units
from smartcharge.site import steps
from smartcharge.site.plan import ConnectorPlan
from smartcharge.site.station_control import Sent, StationControl
from smartcharge.site.topology import ConnectorRef


class InstalledLimits:
    def _phase_use(self, control: StationControl, cplan: ConnectorPlan) -> tuple[int, float]:
        connector = self.topology.connector(cplan.ref)
        phases = min(cplan.phases, connector.phases)
        return phases, self.w_factor(control.unit, cplan.ref, phases, cplan.phases_known)

    def _sent_w(self, sent: Sent, phases: int, factor: float, ref: ConnectorRef) -> steps.Step:
        """A profile's limits as the plan's W (what the car may draw on `phases`, undoing the
        W factor dispatch applied)."""
        voltage = self.topology.station(ref.station_id).voltage_v
        return [(sent.start + timedelta(seconds=s),
                 units.rate_to_w(limit, sent.unit, phases, voltage) / factor)
                for s, limit in zip(sent.starts_s, sent.limits)]

    def _below_w(self, control: StationControl, ref: ConnectorRef, phases: int, factor: float,
                 replaces_idle: bool) -> steps.Step | None:
        """What a connector falls back to when its TxProfile ends: the stack-1 TxDefault (idle
        share), then the fail-safe default; unknown defaults count as its maximum."""
        default = control.default_layer.get(ref.connector_id)
        if default is None:
            step = [(datetime.min.replace(tzinfo=UTC), self.topology.max_power_w(ref) / factor)]
        else:
            step = self._sent_w(default, phases, factor, ref)
        idle = control.idle_layer.get(ref.connector_id)
        if idle is not None and not replaces_idle:
            step = steps.overlay(self._sent_w(idle, phases, factor, ref), idle.expires, step)
        return step

    def _installed_w(self, control: StationControl, ref: ConnectorRef, phases: int,
                     factor: float, transaction_id: int | None) -> steps.Step:
        below = self._below_w(control, ref, phases, factor, False)
        old = control.sent.get(ref.connector_id)
        if old is None or old.transaction_id != transaction_id:
            if self._unknown_tx(ref, transaction_id):
                # a transaction older than this process: the station may run a TxProfile an
                # earlier process sent (until it ends, which we do not know): its maximum
                return [(datetime.min.replace(tzinfo=UTC),
                         self.topology.max_power_w(ref) / factor)]
            return below
        return steps.overlay(self._sent_w(old, phases, factor, ref), old.expires, below)

    def _unknown_tx(self, ref: ConnectorRef, transaction_id: int | None) -> bool:
        session = self.view.state.sessions.get(ref)
        return (transaction_id is not None and session is not None
                and session.transaction_id == transaction_id
                and session.started_at < self.started_at)

    def governs(self, ref: ConnectorRef) -> bool:
        """True when a profile we sent (and the station accepted) for the connector's running
        transaction is what limits it. Otherwise - a new transaction, or after a restart or a
        reconnect, when the station may still run profiles we do not know - its draw proves
        nothing about obedience."""
        control = self.stations.get(ref.station_id)
        session = self.view.state.sessions.get(ref)
        if control is None or session is None or control.resend:
            return False
        sent = control.sent.get(ref.connector_id)
        if sent is not None:
            return sent.transaction_id == session.transaction_id
        return not self._unknown_tx(ref, session.transaction_id)

    def followed_since(self, ref: ConnectorRef) -> datetime | None:
        """From when a car had its settle time under the limit in force now: after the last
        accepted profile and the last step of the installed schedule (a DR window beginning)."""
        changed = self.changed_at.get(ref)
        moments = [] if changed is None else [changed]
        control = self.stations.get(ref.station_id)
        if control is not None and ref.connector_id in control.default_layer:
            step = self._current_step(control, ref)
            now = self.clock.now()
            moments += [m for m, _ in step if m <= now][-1:]
        if not moments:
            return None
        return max(moments) + timedelta(seconds=self.settings.settle_s)

    def _current_step(self, control: StationControl, ref: ConnectorRef) -> steps.Step:
        session = self.view.state.sessions.get(ref)
        phases = self.view.phase_use(ref)[0]
        step = self._installed_w(control, ref, phases, 1.0,
                                 session.transaction_id if session else None)
        out: steps.Step = []
        for moment, value in step:     # only the moments where the value changes
            if not out or out[-1][1] != value:
                out.append((moment, value))
        return out

    def installed_w(self, ref: ConnectorRef, since: datetime | None = None) -> float | None:
        """The most a connector's accepted profiles let it draw [W] from `since` (its settle
        time before) until now (None: unknown)."""
        control = self.stations.get(ref.station_id)
        if control is None or ref.connector_id not in control.default_layer:
            return None
        now = self.clock.now()
        since = now if since is None else min(since, now)
        since -= timedelta(seconds=self.settings.settle_s)
        step = self._current_step(control, ref)
        most = max(steps.value_at(step, m) for m in steps.moments(step, since=since) if m <= now)
        return min(most, self.topology.max_power_w(ref))

    def installed_max_w(self, ref: ConnectorRef) -> float | None:
        """The most a connector may draw from now on under what it has accepted (None: no
        profile known accepted): what a connector that stopped obeying us is planned at."""
        control = self.stations.get(ref.station_id)
        if control is None or ref.connector_id not in control.default_layer:
            return None
        session = self.view.state.sessions.get(ref)
        phases = self.topology.connector(ref).phases
        step = self._installed_w(control, ref, phases, 1.0,
                                 session.transaction_id if session else None)
        return min(steps.maximum(step, self.clock.now()), self.topology.max_power_w(ref))
