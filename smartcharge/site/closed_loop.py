"""The closed loop: what the cars' meters say about what they take, fed back into the plan.

A car drawing clearly less than it was given (a battery in taper, a car that limits itself) is
planned at its draw plus a little headroom (`ev_cap_w`), followed down as it tapers and lifted
once it takes up to its cap again; a car drawing ~0 while offered its minimum declines power
(`declined_at`: full, or paused by itself; its station saying SuspendedEV after Charging tells
the same at once) and is planned at 0 for a while. The planner reads
both through the controller's picture (`plan_inputs.py`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from smartcharge.site import in_steps
from smartcharge.site.charger_ceiling import ChargerCeiling
from smartcharge.site.installed import planned_share
from smartcharge.site.taper import Point, TaperModel
from smartcharge.site.topology import ConnectorRef

# a car read at ~0 W declines only if the plan offered it its minimum this long before the sample
OFFER_LOOKBACK_S = 60.0
# what a station says of whether its car takes power (1.6 StatusNotification's statuses of a
# session, 2.0.1 TransactionEvent's chargingState); 1.6's others (Available, Finishing, ...)
# say nothing of it
CHARGING_STATES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE", "EVConnected", "Idle"})


FORGET_PER_STEP = 500   # connectors looked up per step of `forget_ended_steps` (~0.5-2 ms)
_GONE = object()


class ClosedLoop:
    def __init__(self, controller):
        self.c = controller
        self.ev_cap_w: dict[ConnectorRef, float] = {}        # what a car takes (+ headroom)
        self.declined_at: dict[ConnectorRef, datetime] = {}  # a car that takes 0, since
        self._zero_samples: dict[ConnectorRef, int] = {}
        # a tapering car's acceptance line (site/taper.py): planned slot by slot along it
        self.taper = TaperModel()
        self._sampled: dict[ConnectorRef, tuple[datetime, float | None]] = {}  # at, interval
        # what each connector's station last said of its car: (transaction, charging state)
        self._said: dict[ConnectorRef, tuple[int, str]] = {}
        # the transaction of each car offered power again after declining it (`declines`)
        self._retried: dict[ConnectorRef, int] = {}
        # a three-phase car's on-board charger guessed at 16 A until it draws that
        self.ceiling = ChargerCeiling(controller.topology, controller.settings.charger_guess_a,
                                      controller.settings.ev_headroom_w)

    def next_sample(self, ref: ConnectorRef, now: datetime) -> datetime | None:
        """When the car's next meter sample is due (its last one plus its interval)."""
        at, interval_s = self._sampled.get(ref, (None, None))
        if at is None or not interval_s:
            return None
        step = timedelta(seconds=interval_s)
        due = at + step
        return due if due > now else now + step

    def _sample_seen(self, ref: ConnectorRef, at: datetime) -> None:
        last, interval_s = self._sampled.get(ref, (None, None))
        if last is not None and at > last:
            interval_s = (at - last).total_seconds()
        self._sampled[ref] = (at, interval_s)

    def phases_learned(self, ref: ConnectorRef, event=None) -> None:
        """The car's phase use is now known: its cap was measured on a guess. The sample that
        showed it (`event`) is followed like any other when the plan had guessed right (it
        skipped the closed loop: an 11 kW car given 22 kW kept them another meter interval)."""
        self.ev_cap_w.pop(ref, None)
        self.taper.forget(ref)
        plan = self.c.plan.connectors.get(ref) if self.c.plan else None
        session = self.c.state.sessions.get(ref)
        if event is not None and plan is not None and session is not None and \
                plan.transaction_id == session.transaction_id and \
                plan.phases == session.phases_in_use:
            self.on_sample(event)

    def drawn_since_sample_wh(self, ref: ConnectorRef, now: datetime) -> float:
        """What the car has drawn since its register was last read, by what it drew then and
        what the plan offers it now (the less: a car does not take more than either), over
        the time since the sample arrived (our clock: a station's may be off). 0 without a
        fresh sample. The plan then works from the car's energy now, not at its sample: a
        re-plan between samples (a slot edge, an arrival) planned a car near its need on
        energy it had already taken, and it was full early in the slot while the power it
        was given stood unused until its next sample (demo day, truthful: 15 kWh a day,
        every watt within 5 minutes of the car becoming full). At most one meter interval
        (the car's own, else stale_after_s) is counted: an overdue sample says nothing more."""
        sample = self.c.state.measurements.get(ref)
        if sample is None or sample.power_w <= 0.0:
            return 0.0
        offered = self.c.allocated_now_w(ref)
        if offered is None:
            return 0.0
        _, interval_s = self._sampled.get(ref, (None, None))
        elapsed_s = min(max((now - sample.arrived).total_seconds(), 0.0),
                        interval_s or self.c.settings.stale_after_s)
        return min(sample.power_w, offered) * elapsed_s / 3600.0

    def forget_ended(self, now: datetime) -> None:
        """Facts of sessions that ended; a declined car is offered power again after
        declined_retry_s."""
        in_steps.run_all(self.forget_ended_steps(now))

    def forget_ended_steps(self, now: datetime) -> in_steps.Steps[None]:
        """`forget_ended` in steps of FORGET_PER_STEP connectors: a look-up of every
        connector of the site in three dicts took 10-23 ms of the loop's CPU in one go at 5 000
        stations, the longest piece of a re-plan's picture (s33-stall). The declined cars go
        first, in one go: the picture reads theirs (a retry due now is in it). A connector's
        facts are then dropped if its session is gone when its step runs - the picture reads
        the facts of running sessions only, so it does not matter that the steps are spread
        over turns; one that ended meanwhile is left to the next re-plan, one that started
        meanwhile keeps them, as it would have had it started just before."""
        sessions = self.c.state.sessions
        retry = timedelta(seconds=self.c.settings.declined_retry_s)
        for ref in [r for r, at in self.declined_at.items()
                    if r not in sessions or now - at >= retry]:
            del self.declined_at[ref]
            if ref in sessions:
                self._retried[ref] = sessions[ref].transaction_id
        for facts in (self.ev_cap_w, self._sampled, self._said, self._retried,
                      self.ceiling.lifted):
            refs = list(facts)   # (no look-ups: the dict's own order)
            for first in range(0, len(refs), FORGET_PER_STEP):
                yield
                for ref in refs[first:first + FORGET_PER_STEP]:
                    if ref in sessions or facts.pop(ref, _GONE) is _GONE:
                        continue
                    if facts is self._sampled:
                        self.taper.forget(ref)

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
        sampled_at = self.c.state.measurements[ref].ordered_at
        self._sample_seen(ref, sampled_at)
        s = self.c.settings
        if self.ceiling.guess_a is not None:   # (off by default: nothing per sample then)
            phases, _, known = self.c.phase_use(ref)
            if self.ceiling.on_sample(ref, self.c.state.sessions[ref].transaction_id, measured,
                                      phases, known):
                self.c.request_replan(f"charger-ceiling:{ref.station_id}/{ref.connector_id}")
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
        elif plan is not None:
            # without stations (the quality benchmark, tests) the same third by the site
            # file's unit: read against the plan's whole W, a new 22 kW car on a W station
            # drawing all of the third it was sent was capped there for a meter interval
            allocated *= planned_share(self.c.topology, ref, plan.phases, plan.phases_known)
        if self.c.installed is not None:
            # ... and what the car had time to follow when sampled: a sample under the
            # profile before (a plan not yet sent, accepted or settled) is no underuse - a car
            # sampled at 0 W before its first profile was capped at 500 W for good
            given = self.c.installed.followed_w(ref, self.c.state.measurements[ref].ordered_at)
            if given is None:
                return
            allocated = min(allocated, given)
        if self._follow_taper(ref, sampled_at, measured, allocated):
            return
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

    def _follow_taper(self, ref: ConnectorRef, sampled_at: datetime, measured: float,
                      allocated: float) -> bool:
        """Teach the taper model this sample; True when the car is planned along its learned
        line (site/taper.py), which then replaces the draw-plus-headroom cap. Plans again when
        the line is new, refuted, or says the car will take less by its next sample than it
        is offered now (beyond the follow margin)."""
        s = self.c.settings
        if not s.taper_model:
            return False
        energy_wh = self.c.state.sessions[ref].energy_wh
        had = ref in self.taper.fits
        verdict = self.taper.observe(ref, Point(sampled_at, energy_wh, measured), allocated,
                                     s.ev_headroom_w / 2)
        name = f"{ref.station_id}/{ref.connector_id}"
        fit = self.taper.fits.get(ref)
        if fit is None:
            if verdict == "refuted":
                self.c.request_replan(f"taper-refuted:{name}")
            return False
        self.ev_cap_w.pop(ref, None)
        due = self.next_sample(ref, sampled_at) or sampled_at
        will_take = fit.along_w(sampled_at, energy_wh, due) + s.ev_headroom_w
        if not had or allocated - will_take > s.ev_follow_w:
            self.c.request_replan(f"taper:{name}")
        return True

    def on_charging_state(self, ref: ConnectorRef, state: str,
                          transaction_id: int | None = None) -> None:
        """The station's word on its car (`CHARGING_STATES`). A car it said was Charging and
        now says is SuspendedEV - it stopped by itself while offered power - declines power
        now, as two samples at ~0 W would say up to two meter intervals later: the plan's
        power goes to the others at once. Only while the plan offers it its minimum (and,
        with stations, their profile allows it and the car had its settle time under it:
        `offered_minimum`), so a car the plan paused, or one not told yet, is not taken for a
        full one; never before it drew (a car starting up may say SuspendedEV first)."""
        session = self.c.state.sessions.get(ref)
        if state not in CHARGING_STATES or session is None or \
                transaction_id not in (None, session.transaction_id):
            return
        before = self._said.get(ref)
        self._said[ref] = (session.transaction_id, state)
        if state != "SuspendedEV" or before != (session.transaction_id, "Charging") or \
                ref in self.declined_at or not self.offered_minimum(ref):
            return
        self._zero_samples.pop(ref, None)
        self.declined_at[ref] = self.c.clock.now()
        self.c.request_replan(f"declined:{ref.station_id}/{ref.connector_id}")

    def declines(self, ref: ConnectorRef, measured: float) -> bool:
        """A car drawing ~0 at two samples in a row while offered at least its minimum does
        not want power (full, or paused by itself): planned at 0, it frees that minimum for
        the others until `declined_retry_s` has passed (a full car held its minimum until it
        left: 414 kWh of plan on the demo day, benchmarks/README.md). Two samples, so a car
        still starting up is not taken for one that declines; one for a car the closed loop
        had capped at its falling draw or follows along its taper (a battery in taper that
        stops drawing is full). One too for a car offered power again after it declined
        (`declined_retry_s`): it has shown it is full, and its station, which said so, has
        nothing new to say while it stays so - taken for a car starting up, a full car held
        its offer for two meter intervals at every retry (demo day, the demo's drivers:
        09:06-09:14 4-7 kW to a full car, a 9-minute dip; benchmarks/README.md
        "s34-quality")."""
        session = self.c.state.sessions.get(ref)
        retried = session is not None and self._retried.get(ref) == session.transaction_id
        if measured >= self.c.settings.declined_w:
            self._zero_samples.pop(ref, None)
            self._retried.pop(ref, None)    # it takes power again: the usual rules
            since = self.declined_at.get(ref)
            if since is not None and self.c.state.measurements[ref].ordered_at > since:
                # measured drawing after it declined: it paused by itself and charges again
                # (a balancing pause, a timer) on what its station still lets it draw - its
                # minimum where the station refuses 0. It wants power: planned at 0 until
                # the hour's retry, it crept at that minimum (session 39's judge)
                del self.declined_at[ref]
                self.c.request_replan(f"resumed:{ref.station_id}/{ref.connector_id}")
            return False
        if not self.offered_minimum(ref) or not self._offered_before_sample(ref):
            self._zero_samples.pop(ref, None)
            return False
        self._zero_samples[ref] = self._zero_samples.get(ref, 0) + 1
        tapering = ref in self.ev_cap_w or ref in self.taper.fits
        if self._zero_samples[ref] < (1 if tapering or retried else 2):
            return False
        self._zero_samples.pop(ref, None)
        self._retried.pop(ref, None)
        if retried and not tapering:
            # capped at its draw, as the first of two samples would have: its next retry
            # offers it its minimum, not its bay's maximum taken from the others for a meter
            # interval (a car that wants more again reaches the cap and has it lifted)
            self.ev_cap_w[ref] = measured + self.c.settings.ev_headroom_w
        self.declined_at[ref] = self.c.clock.now()
        self.c.request_replan(f"declined:{ref.station_id}/{ref.connector_id}")
        return True

    def _offered_before_sample(self, ref: ConnectorRef) -> bool:
        """The plan standing offered the car its minimum just before its sample too (when it
        covers that moment): a car the plan paused until a slot edge and resumes there is
        read at ~0 W by a sample at that edge (stations sample on the clock's quarter hours,
        where the slots change), and was taken for one that declines - planned at 0 for
        declined_retry_s (tests/test_site_give_way.py: 10 of 60 minutes charged)."""
        plan = self.c.plan.connectors.get(ref) if self.c.plan else None
        sample = self.c.state.measurements.get(ref)
        if plan is None or sample is None:
            return True
        before = sample.ordered_at - timedelta(seconds=OFFER_LOOKBACK_S)
        if before < self.c.plan.at:
            return True   # planned since: what stood before is not known here
        return plan.power_at(before) >= plan.min_power_w - 1e-6

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
