"""Idle connectors' short-lived idle schedules (a TxDefaultProfile above the fail-safe default,
ending at the common `expiry` like every plan): their share of the room a plan leaves, so a car
arriving before the next re-plan stays within it. Which ones to send, and in which part of a
round: like a plan, an idle schedule is compared with what is installed on the connector in
every interval - its idle schedule until that ends, then its fail-safe default.

Compared with the last idle value alone, a share re-sent unchanged to a later common end looked
like no decrease, though from the old end on it lowers the connector from its default to the
share: it went out with the increases, after the plans' raises of the same interval (a car's
plan to the new end, over its own default there). In between - for ever if the second request
never came - the station allowed the car its plan and the idle connector its default from the
old end on: over the limit (seen in the demo under CPU load, on connectors whose cars the
controller had not yet heard of). A share that lowers somewhere and raises elsewhere goes
first as the pointwise minimum of the two, then in full, as a plan does (`dispatch._split`).

A charging connector whose car runs on a TxProfile gets an idle schedule too: 0 W until the
common end (`_under_change`). What the plan leaves for a NEW car there is nothing beyond the room
the idle shares already give out, and a car can start there unseen - the old car's departure
not heard yet (a station's lagging or queued messages, or only the second between a new
transaction starting on the station and its StartTransaction / TransactionEvent reaching us and
the re-plan). Under the fail-safe default it drew its equal share of the limits above it while
the others ran their plans: a 22 kW feeder at 27.9 kW with two stations, either version
(`tests/test_unseen_car.py`). The car that is charging does not see it (its TxProfile
overrules every default); the new car waits at 0 W until its session is heard and planned.

Sent once per session (a re-plan sends nothing more: `idle_sent` holds (0, the common end)), and
again when the common end moves on, with the plans (from the old end on, the fail-safe default
would be under the connector again). It ends with the plans, so if we are gone the fail-safe
default takes over then, as it does for the plans. Ordered like a decrease, after the plan's
own items: with the decreases when the station already runs the transaction's TxProfile or a
part of the plan goes with the decreases (the car is on its TxProfile when the default drops,
so it never pauses); otherwise the plan only raises the connector over what is installed under
it, which is then lawful for a new car as it is (the plan reserves more) and the 0 W goes with
the increases, after the plan. When the session ends the idle share replaces it, as for any
idle connector (a share of a kW or less leaves it at 0 W: safe). Not sent where the plans go
out as the connector's default (a station that refuses TxProfiles: the plan is the default and
limits any car already), where the station refuses 0 (`zero_ok`) or has no stack level for an
idle layer - those connectors keep their fail-safe default under a new car, as before.

The other design, the plan itself sent as the default (sized for any car), costs no request
but plans every car for unknown phases (a third of the W for a single-phase car under
per-phase limits) and puts a plan on whatever car comes next; 0 W costs one request per session
and one per charging connector when the common end moves on (every plan is re-sent then too).

A mixin of `Dispatcher` (needs `topology`, `installed`, `clock`, `expiry`, `power_schedule`)."""

from __future__ import annotations

from smartcharge.ocpp.port import Answer
from smartcharge.ocpp.registry import StationOffline
from smartcharge.site import steps
from smartcharge.site.plan import Plan
from smartcharge.site.station_control import StationControl
from smartcharge.site.topology import ConnectorRef

# (connector, its share [W], goes with the decreases, the part sent first or None)
IdleChange = tuple[int, float, bool, "steps.Step | None"]


class IdleSending:
    def _idle_changes(self, control: StationControl, plan: Plan) -> list[IdleChange]:
        """Idle connectors whose idle schedule needs sending now: a new share, one lower or
        much higher than the last, or the common end moved on. A share that lowers somewhere
        and raises elsewhere comes twice: its pointwise minimum with the decreases, then in
        full with the increases."""
        if not control.caps.idle_layer:
            return []   # it would replace the fail-safe default
        now = self.clock.now()
        out: list[IdleChange] = []
        for connector in self.topology.station(control.station_id).connectors:
            cid = connector.connector_id
            ref = ConnectorRef(control.station_id, cid)
            value = plan.idle_w.get(ref)
            if value is None or (value <= 0 and not control.zero_ok):
                continue
            sent = control.idle_sent.get(cid)
            if not (sent is None or value < sent[0] - 1.0 or sent[1] != self.expiry
                    or value > sent[0] + max(1000.0, 0.2 * sent[0])):
                continue
            installed, wanted = self._idle_steps(control, ref, connector.phases, value)
            # (no default known installed: it counts at its maximum, so a share lowers it)
            lowers, raises = steps.compare(installed, wanted, now)
            if lowers and raises:
                part = steps.pointwise_min(installed, wanted, now, self.expiry)
                out.append((cid, value, True, part))
                out.append((cid, value, False, None))
            else:
                out.append((cid, value, lowers, None))
        return out

    def _idle_steps(self, control: StationControl, ref: ConnectorRef, phases: int,
                    value: float) -> tuple[steps.Step, steps.Step]:
        """(installed, wanted) on an idle connector in the plan's W: its idle schedule until
        it ends, then its fail-safe default; the share until the common end, then the
        default."""
        factor = self.installed.w_factor(control.unit, ref, phases, False)
        installed = self.installed.below_steps(control, ref, phases, factor, False)
        wanted = steps.overlay([(self.clock.now(), value)], self.expiry,
                               self._default_steps(control, ref, phases, factor))
        return installed, wanted

    def _default_steps(self, control: StationControl, ref: ConnectorRef, phases: int,
                       factor: float | None = None) -> steps.Step:
        """The connector's fail-safe default in the plan's W, for a car of unknown phases."""
        if factor is None:
            factor = self.installed.w_factor(control.unit, ref, phases, False)
        return self.installed.below_steps(control, ref, phases, factor, True)

    def _kept_after_refusal(self, control: StationControl, ref: ConnectorRef, now) -> float:
        """What a car arriving at an idle connector whose idle schedule was refused may draw
        from now on [W]: the most of what it accepted - an older idle share until that ends,
        then its default (its maximum where none is known) - and the default last sent.
        The default alone was kept: CP2 refusing its idle share's decrease under a 25 kW cap
        kept its old 22 kW share while the plan kept 12.5 kW free for it and gave CP1 6.2 kW
        (28.3 kW: tests/test_outside_s36_held_idle.py). Flat: after the old share ends it
        stays reserved until the share is sent again (the common end moving on) - more room
        kept than needed, never less."""
        connector = self.topology.station(control.station_id).connector(ref.connector_id)
        below = self.installed.below_steps(control, ref, connector.phases, 1.0, False)
        sent = control.default_sent.get(ref.connector_id) or ()
        return max(steps.maximum(below, now), max((w for _, w in sent), default=0.0))

    # --- the 0 W under a charging connector's TxProfile ----------------------------------------
    @staticmethod
    def _under_possible(control: StationControl, as_default: bool) -> bool:
        """A 0 W default can go under the car: its plans go out as TxProfiles, the station has
        an idle layer and takes 0."""
        return not as_default and control.caps.idle_layer and control.zero_ok

    @staticmethod
    def _on_tx(control: StationControl, connector_id: int, transaction_id: int) -> bool:
        """The station took a TxProfile of this transaction (last sent, not as the default)."""
        old = control.sent.get(connector_id)
        return old is not None and not old.default and old.transaction_id == transaction_id

    def _zero_tried(self, control: StationControl, connector_id: int) -> bool:
        """A 0 W was sent for this common end (taken, refused or unanswered)."""
        sent = control.idle_sent.get(connector_id)
        return sent is not None and sent[0] <= 1.0 and sent[1] == self.expiry

    def zero_under_in_round(self, control: StationControl, cplan, as_default: bool) -> bool:
        """Whether a charging connector's plan has the 0 W default under it in this round: it
        runs on a TxProfile of this transaction already, so the 0 W is in place or goes out
        with the decreases (`_under_change`)."""
        cid = cplan.ref.connector_id
        if not (self._under_possible(control, as_default)
                and self._on_tx(control, cid, cplan.transaction_id)):
            return False
        if not self._zero_tried(control, cid):
            return True     # goes out in this round, with the decreases (`_under_change`)
        # tried for this end: only a 0 W the station took is a floor (one left unanswered or
        # refused is not; it is retried when the common end moves on)
        layer = control.idle_layer.get(cid)
        return layer is not None and layer.expires >= self.expiry \
            and max(layer.limits, default=1.0) <= 0.0

    def _under_change(self, control: StationControl, cplan, as_default: bool,
                      down, up) -> bool | None:
        """Whether a charging connector's 0 W default goes out now: None (not needed), True
        (with the decreases), False (with the increases, after its plan's raise)."""
        cid = cplan.ref.connector_id
        if not self._under_possible(control, as_default) or self._zero_tried(control, cid):
            return None   # (tried: in place, or refused - retried when the common end moves on)
        on_tx = self._on_tx(control, cid, cplan.transaction_id)
        if not on_tx and down is None and up is None:
            return None   # the car runs on what is installed under it: that is its plan
        return on_tx or down is not None

    async def _send_under(self, control: StationControl, connector_id: int,
                          transaction_id: int) -> None:
        """The 0 W default under a transaction's TxProfile, only once the station took the
        TxProfile (refused, or sent as the default instead: the car would be paused)."""
        if self._on_tx(control, connector_id, transaction_id):
            await self._send_idle(control, connector_id, 0.0)

    async def _send_idle(self, control: StationControl, connector_id: int, value: float, *,
                         raising: bool = False, part: steps.Step | None = None) -> Answer:
        """The idle schedule: `value` until the common end, or `part` (W steps, the pointwise
        minimum sent before it with the decreases). Returns the station's answer."""
        now = self.clock.now()
        connector = self.topology.station(control.station_id).connector(connector_id)
        ref = ConnectorRef(control.station_id, connector_id)
        duration_s = max(int((self.expiry - now.replace(microsecond=0)).total_seconds()), 1)
        offsets, powers = [0.0], [value]
        # what it falls to at the end (its fail-safe default): a raise there waits (edges.py)
        then_w = steps.value_at(self._default_steps(control, ref, connector.phases), self.expiry)
        if part is not None:
            later = [(m, w) for m, w in part if now < m < self.expiry]
            offsets = [0.0] + [(m - now).total_seconds() for m, _ in later]
            powers = [steps.value_at(part, now)] + [w for _, w in later]
        # a raise is held by its schedule (edges.held): no sooner in force than the settle
        # time after it is sent, like a plan's - the round sends it once the decreases it
        # relies on are acknowledged and does not wait itself
        factor = self.installed.w_factor(control.unit, ref, connector.phases, False)
        schedule = self.power_schedule(ref, now, offsets, powers, phases=connector.phases,
                                       phases_known=False, duration_s=duration_s,
                                       then_w=then_w,
                                       installed=self.installed.below_steps(
                                           control, ref, connector.phases, factor, False))
        # written ahead where it raises what the store keeps of what the connector may let a
        # car draw (held_defaults._idle_above): killed after the station took it, a restart
        # holding a station still offline must not count on less
        self._idle_sent_w[ref] = max(powers)
        await self._record_held(control, idle_new={connector_id: max(powers)})
        try:
            answer, installed = await control.port.set_idle_schedule(connector_id, schedule)
        except StationOffline as exc:
            # cut off before the answer: a raise may be in force, as one left unanswered
            in_flight = getattr(exc, "in_flight", None)
            if raising and in_flight is not None:
                control.idle_layer[connector_id] = in_flight
            raise
        if answer is Answer.ACCEPTED or (answer is Answer.NO_ANSWER and raising):
            # an unanswered raise may be installed all the same: the upper bound
            control.idle_layer[connector_id] = installed
        if answer is Answer.ACCEPTED:
            self.changed_at[ref] = self.clock.now()   # its settle time from here (failsafe.py)
        if answer is not Answer.NO_ANSWER and ref not in self.view.state.sessions:
            # refused (no slot left, say): a car arriving here draws what the connector still
            # holds - the idle share it took before until that ends, then its default
            self._note_kept_default(ref, None if answer is Answer.ACCEPTED
                                    else self._kept_after_refusal(control, ref, now))
        # recorded even when refused: best effort, retried when it runs out (the part: its
        # least, so the full share that follows is a change)
        control.idle_sent[connector_id] = (min(powers), self.expiry)
        await self._record_held(control, queue_lower=True)   # (a lower share taken: queued)
        return answer
