"""The plumbing every version's control port shares; the ports themselves, where a
SetChargingProfile leaves, are `v16/station_port.py` and `v201/station_port.py`.

Here: the connection a port is bound to and what it was made with, the unit and the "limit 0
refused" flag, calls with retries, one SetChargingProfile on the wire with its audit row, the
station's words as an `Answer`, what a profile's schedule installs, and the order in which a
plan's alternatives are tried. What a version says in its own way stays in its package: payload
shapes, purposes, stack levels, the capability probe, which alternatives it has and what it
remembers of a refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from smartcharge.clock import Clock, parse_ocpp_time
from smartcharge.ocpp.clock_offset import MAX_SHIFT_S, shift_s
from smartcharge.ocpp.port import (FOREVER, Answer, Installed, PortSettings, PowerSchedule,
                                   Recorder, ScheduleResult, StationPort)
from smartcharge.ocpp.registry import (StationCallError, StationLink, StationOffline,
                                       StationTimeout)
from smartcharge.ocpp.schedules import lead_in, shifted_times

log = logging.getLogger("smartcharge.site.dispatch")
# stations told of (a warning each) while their clock is beyond the edge margin
_clock_warned: set[str] = set()
# how long before our now every schedule sent begins on the wire: a station behind ours by up
# to this runs it at once (`schedules.lead_in`), as far as an offset is ever believed
LEAD_IN_S = int(MAX_SHIFT_S)

NO_ANSWER = Answer.NO_ANSWER.value
TX_DEFAULT_PROFILE = "TxDefaultProfile"   # the purpose's name in 1.6 and 2.0.1 alike


def answer_of(text: str) -> Answer:
    """A station's word ("Accepted", "Rejected", a CALLERROR code, NO_ANSWER) as an Answer."""
    if text == "Accepted":
        return Answer.ACCEPTED
    return Answer.NO_ANSWER if text == NO_ANSWER else Answer.REJECTED


def failed(exc: StationTimeout | StationCallError) -> Answer:
    """A request that failed on the wire: unanswered (it may apply all the same) or refused."""
    return Answer.NO_ANSWER if isinstance(exc, StationTimeout) else Answer.REJECTED


def status_of(result: Any) -> str:
    """The `status` of a station's answer as text (the library gives an enum or a string)."""
    return str(getattr(result.status, "value", result.status))


def _field(item: Any, name: str) -> Any:
    """A field of a station's answer in snake_case or camelCase (dicts or the library's
    dataclasses)."""
    if not isinstance(item, dict):
        return getattr(item, name, None)
    camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
    return item.get(name, item.get(camel))


def composite_installed(start_text: str | None, schedule: Any, *, asked_at) -> Installed:
    """A GetCompositeSchedule answer's schedule as an `Installed` (transaction 0) from its
    start (the station's, else when we asked), until its duration ends."""
    start_text = start_text or _field(schedule, "start_schedule")
    start = parse_ocpp_time(start_text) if start_text else asked_at
    periods = _field(schedule, "charging_schedule_period")
    starts_s = [int(_field(p, "start_period")) for p in periods]
    limits = [float(_field(p, "limit")) for p in periods]
    if not starts_s or starts_s[0] != 0 or starts_s != sorted(starts_s):
        raise ValueError(f"periods do not begin at 0 in order: {starts_s}")
    duration_s = _field(schedule, "duration")
    unit = str(getattr(_field(schedule, "charging_rate_unit"), "value",
                       _field(schedule, "charging_rate_unit")))
    phases = [_field(p, "number_phases") for p in periods]
    return Installed(transaction_id=0, start=start,
                     expires=start + timedelta(seconds=int(duration_s)) if duration_s
                     else FOREVER, unit=unit, phases=max((int(n) for n in phases if n), default=3),
                     starts_s=starts_s, limits=limits)


# the last startSchedule read and its moment: a round's requests are built in the same few
# seconds and share it (parsed ~2 200 times in a DR round at 1 000 connectors, issue 10)
_last_start: tuple[str, datetime] = ("", datetime.min)


def _schedule_start(text: str) -> datetime:
    global _last_start
    if _last_start[0] != text:
        _last_start = (text, parse_ocpp_time(text))
    return _last_start[1]


def installed_from_profile(profile: dict, sched: dict, transaction_id: int = 0) -> Installed:
    """What a charging profile installs, given its schedule `sched` (the schedule's fields are
    the same in 1.6 and 2.0.1; where the schedule sits in the profile is not)."""
    periods = sched["chargingSchedulePeriod"]
    start = _schedule_start(sched["startSchedule"])
    expires = start + timedelta(seconds=sched["duration"]) if "duration" in sched else FOREVER
    return Installed(transaction_id, start, expires, sched["chargingRateUnit"],
                     periods[0].get("numberPhases", 3), [p["startPeriod"] for p in periods],
                     [float(p["limit"]) for p in periods],
                     default=profile["chargingProfilePurpose"] == TX_DEFAULT_PROFILE)


def limits_in(schedule: PowerSchedule, unit: str, *, floor: bool = False,
              any_car: bool = False) -> tuple[list[float], float | None]:
    """The schedule's limits in `unit` and its minimum rate; `floor`: no limit below the
    minimum (a station that refuses 0 pauses the car at the minimum instead); `any_car`: sent as
    the connector's default, so safe for any car (`PowerSchedule.any_car_w_factor`)."""
    limits, minimum = schedule.in_unit(unit, any_car=any_car)
    if floor:
        limits = [max(v, minimum or 0.0) for v in limits]
    return limits, minimum


class ControlPortBase(StationPort):
    """A version's port builds on this: it gives the probe, the payloads and the alternatives,
    and `_record` (where its payload names the connector and the purpose)."""

    def __init__(self, link: StationLink, clock: Clock, record: Recorder, *, voltage_v: float,
                 unit: str = "A", settings: PortSettings | None = None) -> None:
        self.station_id = link.station_id
        self.link = link   # this connection only: a reconnect gets a fresh port
        self.clock = clock
        self.record = record
        self.voltage_v = voltage_v
        self.settings = settings or PortSettings()
        self._unit = unit
        self._zero_ok = True          # False: it refuses limit 0; pause at the minimum
        self._trigger_unsupported = False   # True: it said TriggerMessage MeterValues is not
                                            # implemented (not asked again on this link)
        # the shifts SetChargingProfiles went out with since everything was last sent (every
        # one, not the last: a request sent on the new offset between the move and the
        # re-send hid those held on the old one - a fail-safe default 50 min in the future of
        # a station that set its clock to ours, tests/test_outside_s31.py)
        self.sent_shifts_s: set[int] = set()
        self.resent_on_its_clock = False       # everything was sent again once (its offset)

    @property
    def unit(self) -> str:
        return self._unit

    @property
    def zero_ok(self) -> bool:
        return self._zero_ok

    # --- the order of a plan's alternatives ------------------------------------------------
    def _units_now_first(self, rate_units: Sequence[str]) -> list[str]:
        """The current unit, then the station's others."""
        return [self._unit] + [u for u in rate_units if u != self._unit]

    def _attempts(self, schedule: PowerSchedule, modes: Sequence, units: Sequence[str]
                  ) -> Iterator[tuple[bool, Any, str]]:
        """(floor, mode, unit) in the order they are tried: the plan as it is, then - only for
        a plan that pauses, and only while 0 was never refused - at the minimum instead of 0;
        within each, every mode (how the version sends a plan) in every unit."""
        floors = [False, True] if self._zero_ok else [True]
        for floor in floors:
            if floor and self._zero_ok and not schedule.pauses:
                return   # the minimum instead of 0 only helps a plan that pauses
            for mode in modes:
                for unit in units:
                    yield floor, mode, unit

    async def _in_a_unit(self, rate_units: Sequence[str], build: Callable[[str], dict],
                         in_flight: Callable[[dict], Installed] | None = None
                         ) -> tuple[Answer, dict, Installed | None]:
        """The station's maximum or a fail-safe default, `build(unit)`, in the current unit and,
        refused, in the station's others: each built from what the site asked for, not the
        refused one converted (a default's early start, `site/edges.py`, and its W factor
        stay). The unit taken is remembered; one refused in every unit teaches nothing.
        (answer, the last request sent, what it installs). `in_flight(request)`: what it
        installs, which a StationOffline raised under a request carries (`_send_plan`); None
        without it."""
        for unit in self._units_now_first(rate_units):
            request = build(unit)
            installed = None if in_flight is None else in_flight(request)
            text = await (self._send(request) if in_flight is None
                          else self._send_plan(request, installed))
            if text == "Accepted":
                self._unit = unit
            if text in ("Accepted", NO_ANSWER):
                break
        return answer_of(text), request, installed

    async def _send(self, payload: dict) -> str:
        raise NotImplementedError   # the version's SetChargingProfile

    async def _send_plan(self, payload: dict, installed: Installed) -> str:
        """`_send` for a connector's schedule (a transaction's plan, an idle share, a
        fail-safe default). The connection dropping under it raises StationOffline carrying
        `installed`: the station may have taken the request before it went (as one left
        unanswered may have), and a raise then bounds what it may draw."""
        try:
            return await self._send(payload)
        except StationOffline as exc:
            exc.in_flight = installed
            raise

    def _accepted(self, installed: Installed, floor: bool) -> ScheduleResult:
        """A plan was taken; taken only at the minimum instead of 0: it is remembered."""
        floored = floor and self._zero_ok
        if floored:
            self._zero_ok = False
        return ScheduleResult(Answer.ACCEPTED, installed, floored=floored)

    # --- what the station applies (GetCompositeSchedule) ---------------------------------------
    async def composite(self, connector_id: int, duration_s: int) -> Installed | None:
        request = self._composite_request(connector_id, duration_s)
        asked_at = self.clock.now()
        try:
            # one attempt, no retries: the station's plans wait for it (its set-up holds it)
            answer = await self.link.call(request, timeout_s=self.settings.call_timeout_s)
            status = status_of(answer)
        except (StationTimeout, StationCallError) as exc:
            status = NO_ANSWER if isinstance(exc, StationTimeout) else exc.code
            answer = None
        self.record(self.station_id, connector_id, "GetCompositeSchedule",
                    {"connectorId": connector_id, "duration": duration_s, "unit": self._unit},
                    status)
        if status != "Accepted":
            return None
        try:
            told = composite_installed(*self._composite_parts(answer), asked_at=asked_at)
            # its scheduleStart is on its clock: read back onto ours (`station_shift_s`)
            shift = timedelta(seconds=self.station_shift_s())
            return told if not shift else replace(
                told, start=told.start - shift,
                expires=told.expires if told.expires == FOREVER else told.expires - shift)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            log.warning("station %s connector %d: unreadable composite schedule (%s)",
                        self.station_id, connector_id, exc)
            return None

    def _composite_request(self, connector_id: int, duration_s: int) -> Any:
        raise NotImplementedError   # the version's GetCompositeSchedule

    def _composite_parts(self, answer: Any) -> tuple:
        raise NotImplementedError   # (schedule start text or None, schedule dict)

    # --- a triggered meter sample ---------------------------------------------------------------
    # the station's words (a status or a CALLERROR code) for "I do not do that": not asked again
    TRIGGER_UNSUPPORTED = ("NotImplemented", "NotSupported")

    async def trigger_meter_values(self, connector_id: int) -> Answer:
        if self._trigger_unsupported:
            return Answer.REJECTED
        try:
            # one attempt, no retries: the periodic sample teaches the same a little later
            text = status_of(await self.link.call(self._trigger_request(connector_id),
                                                  timeout_s=self.settings.call_timeout_s))
        except StationTimeout:
            text = NO_ANSWER
        except StationCallError as exc:
            text = exc.code
        if text in self.TRIGGER_UNSUPPORTED:
            self._trigger_unsupported = True
        return answer_of(text)

    def _trigger_request(self, connector_id: int) -> Any:
        raise NotImplementedError   # the version's TriggerMessage for MeterValues

    # --- the station's clock --------------------------------------------------------------------
    def station_shift_s(self) -> int:
        """`clock_offset.shift_s` of this station's offset on this connection (its messages'
        stamps) and the edge margin; beyond the margin a warning, once per station until it
        comes back within it."""
        offset_s = self.link.clock_offset_s
        shift = shift_s(offset_s, self.settings.edge_margin_s)
        if not shift:
            if offset_s is not None and abs(offset_s) > MAX_SHIFT_S:
                if self.station_id not in _clock_warned:
                    _clock_warned.add(self.station_id)
                    log.warning("station %s: its messages' stamps are %+.0f s from our clock, "
                                "beyond what the times it is sent are moved by (%g s): not "
                                "moved - set its clock", self.station_id, offset_s, MAX_SHIFT_S)
            elif offset_s is not None:   # back within the margin (not merely unknown yet)
                _clock_warned.discard(self.station_id)
        elif self.station_id not in _clock_warned:
            _clock_warned.add(self.station_id)
            log.warning("station %s: its clock is %+.0f s from ours (beyond the edge margin of "
                        "%g s; its messages' stamps show it): the times it is sent are moved "
                        "onto its clock - set its clock (it ignores the time our answers give)",
                        self.station_id, offset_s, self.settings.edge_margin_s)
        return shift

    def sent_off_its_clock(self) -> bool:
        """What went out was moved by a shift further than the edge margin from the one its
        offset calls for now: sent before its offset was known (a set-up at its boot, before
        its stamps: the times on our clock), or on a first stamp a second contradicts. Within
        the margin the schedules are safe for the difference (`site/edges.py`). Once per
        connection (`resent_on_its_clock`): a later move (a link whose latency reads as a
        clock behind, as under load in accelerated tests) is sent with the renewals
        (`profile_lifetime_s`), not everything again at each move - but a clock seen set to
        ours is sent again at once (`StationClockMeasured.clock_set`). Every shift sent since
        the last time everything went out counts, not only the last one's."""
        if self.resent_on_its_clock or not self.sent_shifts_s:
            return False
        shift = self.station_shift_s()
        return any(abs(shift - sent) > self.settings.edge_margin_s for sent in self.sent_shifts_s)

    def sending_all_again(self) -> None:
        """Everything goes out again now (on the station's clock as it is): what went out
        before is replaced, its shifts forgotten; once per connection, unless its clock is
        seen set (`StationClockMeasured.clock_set`)."""
        self.resent_on_its_clock = True
        self.sent_shifts_s.clear()

    # --- the wire ---------------------------------------------------------------------------
    async def _call(self, request, *, wire: dict | None = None):
        for attempt in range(self.settings.retries + 1):
            try:
                return await self.link.call(request, timeout_s=self.settings.call_timeout_s,
                                            wire=wire)
            except StationTimeout:
                if attempt == self.settings.retries:
                    raise

    async def _put(self, message: Any, payload: dict) -> str:
        """Send one SetChargingProfile `message` (built from `payload`) and record it; returns
        the answer ("Accepted", "Rejected", "NotSupported", a CALLERROR code, or NO_ANSWER).
        Raises StationOffline (recorded as "offline") when the station is gone."""
        try:
            # `payload` is `message` as it goes out, made by the version's profile builders,
            # schema-valid for every input (their tests): sent as it is (issue 10) - its
            # absolute times moved onto the station's clock where that is beyond the margin
            # (the one place they cross the wire); `payload` itself, what we installed and
            # record, stays on ours
            shift_s = self.station_shift_s()
            self.sent_shifts_s.add(shift_s)
            # begun early enough to be in force at once on a clock behind ours by as much as
            # an offset is ever believed (`schedules.lead_in`); what we record starts as built
            wire = lead_in(payload, LEAD_IN_S)
            wire = shifted_times(wire, shift_s) if shift_s else wire
            answer = status_of(await self._call(message, wire=wire))
        except StationTimeout:
            answer = NO_ANSWER
        except StationCallError as exc:
            answer = exc.code
        except StationOffline:
            self._record(payload, "offline")
            raise
        self._record(payload, answer)
        return answer

    def _record(self, payload: dict, answer: str) -> None:
        raise NotImplementedError   # the version knows where its payload names the connector


__all__ = ["ControlPortBase", "NO_ANSWER", "answer_of", "failed", "installed_from_profile",
           "limits_in", "status_of"]
