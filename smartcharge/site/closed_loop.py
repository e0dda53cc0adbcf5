"""The closed loop: what the cars' meters say about what they take, fed back into the plan.

A car drawing clearly less than it was given (a battery in taper, a car that limits itself) is
planned at its draw plus a little headroom (`ev_cap_w`), followed down as it tapers and lifted
once it takes up to its cap again; a car drawing ~0 while offered its minimum declines power
(`declined_at`: full, or paused by itself) and is planned at 0 for a while. The planner reads
both through the controller's picture (`plan_inputs.py`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from smartcharge.site.topology import ConnectorRef


class ClosedLoop:
    def __init__(self, controller):
        self.c = controller
        self.ev_cap_w: dict[ConnectorRef, float] = {}        # what a car takes (+ headroom)
        self.declined_at: dict[ConnectorRef, datetime] = {}  # a car that takes 0, since
        self._zero_samples: dict[ConnectorRef, int] = {}

    def phases_learned(self, ref: ConnectorRef) -> None:
        """The car's phase use is now known: its cap was measured on a guess."""
        self.ev_cap_w.pop(ref, None)

    def forget_ended(self, now: datetime) -> None:
        """Facts of sessions that ended; a declined car is offered power again after
        declined_retry_s."""
        sessions = self.c.state.sessions
        for ref in [r for r in self.ev_cap_w if r not in sessions]:
            del self.ev_cap_w[ref]
        retry = timedelta(seconds=self.c.settings.declined_retry_s)
        for ref in [r for r, at in self.declined_at.items()
                    if r not in sessions or now - at >= retry]:
            del self.declined_at[ref]

    def on_sample(self, event) -> None:
        """A car's meter sample. A car drawing clearly less than it was given (a battery in
        taper, a car that limits itself) is planned at what it draws plus headroom, so the
        others get the rest from this sample on; as it tapers further the cap follows it
        down; once it draws up to its cap again it may want more, so the cap is lifted.
        Before, a car was capped only 1 kW and 20 % under and never followed down: 224 kWh of
        plan on the demo day went to cars in taper (benchmarks/README.md)."""
        ref = ConnectorRef(event.station_id, event.connector_id)
        if not self.c.topology.has(ref):
            return   # not in the site file: planned at its station's maximum, not followed
        measured = self.c.state.measured_w(ref, self.c.clock.now(), self.c.settings.stale_after_s)
        if measured is None or ref not in self.c.state.sessions:
            return
        s = self.c.settings
        if self.declines(ref, measured):
            return
        cap = self.ev_cap_w.get(ref)
        if cap is not None and measured >= cap - s.ev_headroom_w / 2:
            del self.ev_cap_w[ref]
            self.c.request_replan(f"ev-ramp:{ref.station_id}/{ref.connector_id}")
            return
        allocated = self.c.allocated_now_w(ref)
        if allocated is None or ref in self.c.uncontrollable:
            return
        plan = self.c.plan.connectors.get(ref) if self.c.plan else None
        if plan is not None and self.c.installed is not None:
            # what the station was actually told (a third in W while its phases are unknown)
            allocated = self.c.installed.told_w(ref, allocated, plan.phases, plan.phases_known)
        if self.c.installed is not None:
            # ... and what the car had time to follow when sampled: a sample under the
            # profile before (a plan not yet sent, accepted or settled) is no underuse - a car
            # sampled at 0 W before its first profile was capped at 500 W for good
            given = self.c.installed.followed_w(ref, self.c.state.measurements[ref].ordered_at)
            if given is None:
                return
            allocated = min(allocated, given)
        if cap is not None:
            # capped: follow a car that keeps tapering, once it is a margin under what it was
            # offered (its cap, or less if the plan gave it less) beyond the headroom
            if min(allocated, cap) - measured > s.ev_headroom_w + s.ev_follow_w:
                self.ev_cap_w[ref] = measured + s.ev_headroom_w
                self.c.request_replan(f"underuse:{ref.station_id}/{ref.connector_id}")
            return
        if allocated - measured > max(s.underuse_margin_w, s.underuse_fraction * allocated):
            self.ev_cap_w[ref] = measured + s.ev_headroom_w
            self.c.request_replan(f"underuse:{ref.station_id}/{ref.connector_id}")

    def declines(self, ref: ConnectorRef, measured: float) -> bool:
        """A car drawing ~0 at two samples in a row while offered at least its minimum does
        not want power (full, or paused by itself): planned at 0, it frees that minimum for
        the others until `declined_retry_s` has passed (a full car held its minimum until it
        left: 414 kWh of plan on the demo day, benchmarks/README.md). Two samples, so a car
        still starting up is not taken for one that declines; one for a car the closed loop
        had capped at its falling draw (a battery in taper that stops drawing is full)."""
        if measured >= self.c.settings.declined_w:
            self._zero_samples.pop(ref, None)
            return False
        if not self.offered_minimum(ref):
            self._zero_samples.pop(ref, None)
            return False
        self._zero_samples[ref] = self._zero_samples.get(ref, 0) + 1
        if self._zero_samples[ref] < (1 if ref in self.ev_cap_w else 2):
            return False
        self._zero_samples.pop(ref, None)
        self.declined_at[ref] = self.c.clock.now()
        self.c.request_replan(f"declined:{ref.station_id}/{ref.connector_id}")
        return True

    def offered_minimum(self, ref: ConnectorRef) -> bool:
        """The plan gives the car at least its minimum now and, with stations (dispatch), the
        station has accepted a profile for this session that it has had its settle time under
        and that allows that minimum: a car not yet told must not count as declining."""
        allocated = self.c.allocated_now_w(ref) or 0.0
        plan = self.c.plan.connectors.get(ref) if self.c.plan else None
        if plan is None or allocated <= 0.0 or allocated < plan.min_power_w - 1e-6:
            return False
        if self.c.installed is None:   # planning without stations (tests, benchmarks)
            return True
        if not self.c.installed.governs(ref):
            return False
        since = self.c.installed.followed_since(ref)
        installed = self.c.installed.installed_w(ref)
        return (since is not None and since <= self.c.clock.now() and installed is not None
                and installed >= plan.min_power_w - 1e-6)
