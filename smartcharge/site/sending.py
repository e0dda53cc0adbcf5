"""Sending a connector its plan through the station's port: the schedule in both units with the
W factor (`_schedule_for`), what is remembered when the station accepts, what is reported when it
does not (events: uncontrollable, floor), and the audit row of every request.

Which payload, which unit, which alternative after a refusal: the port's business
(`ocpp/v16/station_port.py` for 1.6).

A mixin of `Dispatcher` (needs `stations`, `topology`, `_voltage_v`, `clock`, `expiry`,
`_refresh_expiry`, `changed_at`, `_audit`, `_audit_wake`, `_report_*`, `_probed`)."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from smartcharge import units
from smartcharge.ocpp.port import Answer, PowerSchedule
from smartcharge.ocpp.registry import StationOffline
from smartcharge.site import learned, steps
from smartcharge.site.edges import edge_safe, held, raise_delay_s
from smartcharge.site.installed import w_factor
from smartcharge.site.plan import ConnectorPlan
from smartcharge.site.station_control import Sent, StationControl
from smartcharge.site.topology import ConnectorRef

log = logging.getLogger("smartcharge.site.dispatch")

NO_ANSWER = Answer.NO_ANSWER.value
# why a connector is uncontrollable, as reported (learned.ConnectorControl): a set-up whose
# answers say the same again keeps it so (failsafe.py, `_controllable_after_setup`)
REFUSES = "every profile rejected"
SILENT = "station does not answer"


class ProfileSending:
    def w_factor(self, unit: str, ref: ConnectorRef, phases: int, phases_known: bool) -> float:
        return w_factor(self.topology, unit, ref, phases, phases_known)

    def power_schedule(self, ref: ConnectorRef, start: datetime, offsets_s: list[float],
                       powers_w: list[float], *, phases: int, phases_known: bool,
                       duration_s: int | None = None, min_power_w: float | None = None,
                       pauses: bool = False, then_w: float | None = None,
                       installed: steps.Step | None = None,
                       max_periods: int | None = None) -> PowerSchedule:
        """Planned W per period -> limits in W (with the W factor) and in A per phase; and the
        limits for the plan sent as the connector's default, which any car may meet: in W the
        W factor of a car whose phases are unknown (a single-phase car draws all its W on one
        phase); in A, for a plan made for a single-phase car on a three-phase connector, a
        third (a three-phase car draws the A limit on each phase: the plan's W in all). The
        controller plans a connector whose plans go out as its default for any car
        (`learned.PlansAsDefault`); this covers the plan that found out, until then.

        Every schedule a connector is sent is built here, and made safe for stations' clocks
        that disagree here (`edges.py`): its raises start the settle time plus
        `edge_margin_s` after their edges (its end too when `then_w`, what the connector falls
        to after it, is higher), and it begins `edge_margin_s` before `start`."""
        start, offsets_s, powers_w, duration_s = edge_safe(
            start, list(offsets_s), list(powers_w), duration_s, then_w=then_w,
            raise_delay_s=self.raise_delay_s(),
            # whole seconds, as OCPP counts: the schedule still ends where it should
            backdate_s=math.ceil(self.settings.edge_margin_s))
        if installed is not None and ref.station_id not in self.raising_at_once:
            # a raise at its start waits too (edges.held), unless it needs nobody's decrease
            # (settling.py)
            offsets_s, powers_w = held(start, offsets_s, powers_w, installed,
                                       self.clock.now() + timedelta(seconds=self.raise_delay_s()))
        voltage = self._voltage_v[ref.station_id]
        factor = self.w_factor("W", ref, phases, phases_known)
        any_car = self.w_factor("W", ref, phases, False)
        # in A too, a W station's car of unknown phases gets the share the planner counted
        a_factor = self.w_factor("A", ref, phases, phases_known)
        min_w = (min_power_w or 0.0) * factor
        min_a = units.w_to_a((min_power_w or 0.0) * a_factor, phases, voltage)
        current_a = [units.w_to_a(p * a_factor, phases, voltage) for p in powers_w]
        one_of_three = phases == 1 and self.topology.connector(ref).phases == 3
        return PowerSchedule(
            start=start, offsets_s=list(offsets_s), power_w=[p * factor for p in powers_w],
            current_a=current_a, phases=phases,
            duration_s=duration_s, min_power_w=min_w or None, min_current_a=min_a or None,
            pauses=pauses,
            any_car_w_factor=None if any_car == factor else any_car / factor,
            any_car_a_divisor=3.0 if one_of_three else 1.0, max_periods=max_periods)

    def raise_delay_s(self) -> int:
        return raise_delay_s(self.settings.settle_s, self.settings.edge_margin_s)

    def _schedule_for(self, cplan: ConnectorPlan,
                      installed: steps.Step | None = None,
                      below_idle: steps.Step | None = None) -> PowerSchedule:
        """`installed`: the connector's installed steps when the caller has them (this turn);
        `below_idle`: its `below_steps` with its idle share, the same. A plan with no minimum
        (a full car's: the planner gives it none) is sent with the connector's, so that a
        station that refuses limit 0 pauses it at that minimum (`port_base.limits_in`, floor)
        instead of refusing every form of it - counted at its maximum then, a full car held
        22 kW of a 30 kW grid from the hungry car beside it (session 39's judge)."""
        connector = self.topology.connector(cplan.ref)
        now = self.clock.now()
        expiry = self.expiry if self.expiry is not None else self._refresh_expiry(now)
        lifetime = max(int((expiry - now.replace(microsecond=0)).total_seconds()), 1)
        offsets, powers = cplan.window(now, lifetime)
        # what the connector falls to when the plan ends (its idle share - unless its plans go
        # out as its default, replacing it - then its fail-safe default): a raise there waits
        control = self.stations[cplan.ref.station_id]
        phases, factor = self.installed.phases_and_factor(control, cplan)
        as_default = cplan.ref.connector_id in control.plans_on_default
        below = below_idle if below_idle is not None and not as_default else \
            self.installed.below_steps(control, cplan.ref, phases, factor, as_default)
        then_w = steps.value_at(below, expiry)
        if self.zero_under_in_round(control, cplan, as_default):
            # the 0 W under its car goes out before this plan's raise in this round, or the
            # station took it for this end (idle.py): what the plan falls to, so the plan's
            # end does not flip between rounds and send it twice
            then_w = min(then_w, 0.0)
        return self.power_schedule(
            cplan.ref, now, offsets, powers, phases=min(cplan.phases, connector.phases),
            phases_known=cplan.phases_known, duration_s=int(lifetime),
            min_power_w=cplan.min_power_w or self.topology.min_power_w(
                cplan.ref, min(cplan.phases, connector.phases)),
            pauses=any(p <= 0 for p in cplan.power_w[:4]),
            then_w=then_w, installed=installed if installed is not None else
            self.installed.installed_steps(control, cplan.ref, phases, factor,
                                           cplan.transaction_id, below_idle),
            max_periods=self._car_max_periods(cplan))

    def _car_max_periods(self, cplan: ConnectorPlan) -> int | None:
        """The most periods the planned car takes per schedule (ISO 15118's, told in its
        needs); None: the station's most."""
        session = self.view.state.session_by_id(cplan.transaction_id)
        return session.ev_max_periods if session is not None else None

    def _desired(self, control: StationControl, cplan: ConnectorPlan, *,
                 floor: bool = False, installed: steps.Step | None = None,
                 below_idle: steps.Step | None = None) -> tuple[PowerSchedule, Sent]:
        schedule = self._schedule_for(cplan, installed, below_idle)
        return schedule, control.port.preview(cplan.ref.connector_id, cplan.transaction_id,
                                              schedule, floor=floor)

    async def _send_plan(self, control: StationControl, cplan: ConnectorPlan, *,
                         raising: bool = False, schedule: PowerSchedule | None = None) -> bool:
        """Send one connector's plan (the port tries the station's alternatives when it
        refuses); True when one was accepted. An increase left unanswered may have been
        installed all the same: it counts as installed (the upper bound of what the connector
        may draw). `schedule`: the plan's, built by the round's comparison (`_split`)."""
        ref = cplan.ref
        if schedule is None:
            schedule = self._schedule_for(cplan)
        try:
            result = await control.port.set_connector_schedule(
                ref.connector_id, cplan.transaction_id, schedule, raising=raising)
        except StationOffline as exc:
            # cut off before the answer: a raise may be in force, as one left unanswered
            in_flight = getattr(exc, "in_flight", None)
            if raising and in_flight is not None:
                control.sent[ref.connector_id] = in_flight
            raise
        if result.answer is Answer.ACCEPTED:
            if not await self._accepted(control, cplan, result.installed):
                self._report_uncontrollable(ref, "its old TxProfile, which overrules the plan "
                                                 "sent as its default, could not be cleared")
                return False
            if result.floored:
                self._report_floor(ref, cplan.min_power_w)
            self._report_uncontrollable(ref, None)
            return True
        if result.answer is Answer.NO_ANSWER:
            if raising:
                control.sent[ref.connector_id] = result.installed
            self._report_uncontrollable(ref, SILENT)
            return False
        # refused: this offer counts as the connector's probe (dispatch.py, `_probe`), the
        # next one due probe_every_s on - one at once offered every alternative again to a
        # station that had just refused them all (unanswered: probed at once, as a retry)
        self._probed[ref] = self.clock.now()
        self._report_uncontrollable(ref, f"{REFUSES} (last answer: {result.detail})")
        return False

    async def _accepted(self, control: StationControl, cplan: ConnectorPlan,
                        sent: Sent) -> bool:
        """Remember what the station took; False: the plan went out as the connector's default
        and the transaction's old TxProfile, which overrules any default, could not be cleared
        (refused or unanswered): what it allows stays what the connector may draw, and the
        plan is not in force (a decrease not done: the increases it makes room for wait)."""
        connector_id = cplan.ref.connector_id
        previous = control.sent.get(connector_id)
        control.sent[connector_id] = sent
        self.changed_at[cplan.ref] = self.clock.now()
        if sent.default != (connector_id in control.plans_on_default):
            # any car may be behind a default: the controller plans it for any car
            (control.plans_on_default.add if sent.default
             else control.plans_on_default.discard)(connector_id)
            self.publish(learned.PlansAsDefault(cplan.ref, sent.default))
        if sent.default:   # the same schedule as the idle one: it replaced it
            control.idle_layer.pop(connector_id, None)
            voltage = self.topology.station(control.station_id).voltage_v
            control.idle_sent[connector_id] = (
                min(units.rate_to_w(r, sent.unit, sent.phases, voltage) for r in sent.limits),
                sent.expires)
        if sent.default and previous is not None and not previous.default \
                and previous.transaction_id == cplan.transaction_id:
            # a transaction schedule still installed would overrule the plan just sent
            try:
                cleared = await control.port.clear(connector_id)
            except StationOffline:   # cut off before the answer: it may still be in force
                self._uncleared(control, connector_id, previous, sent)
                raise
            if cleared is not Answer.ACCEPTED:
                self._uncleared(control, connector_id, previous, sent)
                return False
        return True

    @staticmethod
    def _uncleared(control: StationControl, connector_id: int, previous: Sent,
                   sent: Sent) -> None:
        """The old TxProfile stays what the connector may draw; the plan sent as the default
        sits below it, at the default's level."""
        control.sent[connector_id] = previous
        control.idle_layer[connector_id] = sent

    def _record(self, station_id: str, connector_id: int, kind: str, payload: dict,
                answer: str) -> None:
        """The port's recorder: one audit row per request."""
        self._audit.append((station_id, connector_id, kind, payload, answer, self.clock.now()))
        self.stats_profiles_sent()
        if len(self._audit) >= 200:
            self._audit_wake.set()


__all__ = ["NO_ANSWER", "REFUSES", "SILENT", "ProfileSending"]
