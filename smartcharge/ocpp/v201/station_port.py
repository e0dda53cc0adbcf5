"""The control port for an OCPP 2.0.1 station: where a 2.0.1 SetChargingProfile leaves (`_send`).

Same contract as the 1.6 port (`ocpp/v16/station_port.py`), in 2.0.1's words (`profiles.py`);
the plumbing both share (the call with retries, the wire and its audit row, the order in which a
plan's alternatives are tried) is `ocpp/port_base.py`:
- capabilities: GetVariables on SmartChargingCtrlr, once per connection (`capabilities.py`);
- the station's maximum: a ChargingStationMaxProfile on EVSE 0; fail-safe: a TxDefaultProfile
  per EVSE at stack level 0 with no end, then GetCompositeSchedule to see what the EVSE applies
  (`verified`); an idle share: a TxDefaultProfile at level 1 valid until it ends;
- a transaction's plan: a TxProfile with the station's own transactionId (asked of the adapter:
  ours is an int, the station's a string), and when refused, in order: the other rate unit, the
  plan as the EVSE's TxDefaultProfile at level 1, the minimum rate instead of 0.
  Unlike 1.6, a refusal never switches the station to default plans for good: with ISO 15118
  a station refuses a TxProfile until the EV reported its needs (K15.FR.17), so each plan tries
  the TxProfile first again; the site re-sends when the needs arrive (ChargingNeedsReported);
- every request and its answer goes to the recorder (the audit table), like 1.6.
"""

from __future__ import annotations

import itertools
import logging
from datetime import datetime

from ocpp.v201 import call
from ocpp.v201.enums import ChargingRateUnitEnumType

from smartcharge.ocpp.port import Answer, Capabilities, Installed, PowerSchedule, ScheduleResult
from smartcharge.ocpp.port_base import (NO_ANSWER, ControlPortBase, answer_of, failed,
                                        installed_from_profile, limits_in, status_of)
from smartcharge.ocpp.registry import StationCallError, StationTimeout
from smartcharge.ocpp.v201 import capabilities as C
from smartcharge.ocpp.v201 import profiles as P
from smartcharge.ocpp.v201.transactions import station_transaction

log = logging.getLogger("smartcharge.site.dispatch")
PREVIEW_TX = "preview"   # a preview needs no transaction id: it is never sent
_request_ids = itertools.count(1)


def installed_from_request(request: dict, transaction_id: int = 0) -> Installed:
    """What a 2.0.1 SetChargingProfile request installs (its first, our only, schedule)."""
    profile = request["chargingProfile"]
    return installed_from_profile(profile, profile["chargingSchedule"][0], transaction_id)


class V201StationPort(ControlPortBase):
    def __init__(self, *args, **kwargs) -> None:   # ControlPortBase's: link, clock, record, ...
        super().__init__(*args, **kwargs)
        self.caps201: C.Capabilities201 | None = None
        # EVSEs whose last accepted plan went out as the EVSE's default (TxProfile refused)
        self._on_default: set[int] = set()
        # (EVSE, transaction) whose TxProfile was refused and whose plan runs as the EVSE's
        # default meanwhile (ISO 15118: until its needs; the site re-sends then)
        self.tx_refused: set[tuple[int, int]] = set()
        # EVSE -> (offset s, limit) the station said it applies (GetCompositeSchedule)
        self.verified: dict[int, list[tuple[int, float]] | None] = {}
        self.last_request: dict | None = None
        self._request_id: int | None = None   # our GetChargingProfiles on this connection
        self.foreign: set[int] = set()        # ids not ours the station reported (cleared)
        self._said_off = False                # warned once: smart charging off

    # --- what the site reads ----------------------------------------------------------------
    @property
    def caps(self) -> Capabilities | None:
        c = self.caps201
        if c is None:
            return None
        # built once per capabilities read (both frozen): a dispatch round asks every station
        # (issue 10)
        if getattr(self, "_caps_of", None) is not c:
            self._caps, self._caps_of = c.neutral(), c
        return self._caps

    @property
    def _tx_level(self) -> int:
        """The TxProfile's stack level: 1, or 0 where the station allows no other."""
        top = self.caps201.max_stack_level if self.caps201 is not None else P.UPPER_LEVEL
        return min(P.UPPER_LEVEL, top)

    async def capabilities(self) -> Capabilities:
        if self.caps201 is None:
            try:
                self.caps201 = C.parse(await self._capability_values())
            except StationCallError as exc:
                log.info("station %s: GetVariables refused (%s); assuming defaults",
                         self.station_id, exc)
                self.caps201 = C.Capabilities201()
            if self._unit not in self.caps201.rate_units:
                self._unit = self.caps201.rate_units[0]
            await self.ask_installed()
        return self.caps

    async def _capability_values(self) -> dict[str, str]:
        try:
            answer = await self._call(C.request())
        except StationCallError as exc:
            if exc.code not in ("OccurrenceConstraintViolation", "OccurenceConstraintViolation"):
                raise
            # more items than its ItemsPerMessageGetVariables (B06.FR.15): one at a time
            values: dict[str, str] = {}
            for variable in C.VARIABLES:
                answer = await self._call(C.request([variable]))
                values.update(C.values_from_results(answer.get_variable_result))
            return values
        return C.values_from_results(answer.get_variable_result)

    # --- what else is installed (after a (re)connection) --------------------------------------
    async def ask_installed(self) -> None:
        """GetChargingProfiles of every profile a CSMS set: the station reports them in
        ReportChargingProfiles (the adapter publishes `ChargingProfilesReported`), and each that
        is not one of ours is cleared (`profiles_reported`): a leftover at a higher stack level
        would overrule our fail-safe and plans."""
        self._request_id = next(_request_ids)
        request = call.GetChargingProfiles(request_id=self._request_id, charging_profile={
            "charging_limit_source": ["CSO"]})
        try:
            answer = await self._call(request)
        except (StationTimeout, StationCallError) as exc:
            log.info("station %s: GetChargingProfiles not answered (%s)", self.station_id, exc)
            return
        log.info("station %s: GetChargingProfiles %s", self.station_id, status_of(answer))

    def profiles_reported(self, event) -> None:
        if event.request_id != self._request_id or event.source != "CSO":
            return
        for profile in event.profiles:
            pid = profile.get("id")
            if isinstance(pid, int) and not P.is_ours(pid) and pid not in self.foreign:
                self.foreign.add(pid)
                self.link.spawn(self._clear_foreign(event.connector_id, profile))

    async def _clear_foreign(self, evse_id: int, profile: dict) -> None:
        pid = profile["id"]
        try:
            answer = await self._call(call.ClearChargingProfile(charging_profile_id=pid))
            status = status_of(answer)
        except (StationTimeout, StationCallError) as exc:
            status = NO_ANSWER if isinstance(exc, StationTimeout) else exc.code
        log.warning("station %s EVSE %d: cleared a profile that is not ours (id %d, %s at "
                    "stack level %s): %s", self.station_id, evse_id, pid,
                    profile.get("chargingProfilePurpose"), profile.get("stackLevel"), status)
        self.record(self.station_id, evse_id, "ClearChargingProfile",
                    {"chargingProfileId": pid, "cleared": profile}, status)

    # --- requests ---------------------------------------------------------------------------
    def _sched(self, schedule: PowerSchedule, unit: str, *, floor: bool = False,
               max_periods: int | None = None, any_car: bool = False) -> dict:
        limits, minimum = limits_in(schedule, unit, floor=floor, any_car=any_car)
        return P.charging_schedule(
            schedule.start, schedule.offsets_s, limits, unit=unit, phases=schedule.phases,
            max_periods=schedule.periods_allowed(max_periods or self.caps201.max_periods),
            schedule_id=0,
            duration_s=schedule.duration_s, min_rate=minimum)

    def _plan_request(self, evse_id: int, station_tx: str | None, schedule: PowerSchedule,
                      unit: str, *, floor: bool) -> dict:
        if station_tx is None:
            # the EVSE's default limits whatever car is there, not only the planned one
            return P.upper_default(evse_id, self._sched(schedule, unit, floor=floor,
                                                        any_car=True))
        return P.tx_profile(evse_id, station_tx, self._sched(schedule, unit, floor=floor),
                            self._tx_level)

    def preview(self, connector_id: int, transaction_id: int, schedule: PowerSchedule, *,
                floor: bool) -> Installed:
        tx = None if connector_id in self._on_default else PREVIEW_TX
        return installed_from_request(
            self._plan_request(connector_id, tx, schedule, self._unit, floor=floor),
            transaction_id)

    # --- station maximum, fail-safe, idle ---------------------------------------------------
    async def install_station_max(self, power_w: float, current_a: float,
                                  phases: int, start: datetime | None = None) -> Answer:
        now = self.clock.now() if start is None else start
        schedule = PowerSchedule(now, [0.0], [power_w], [current_a], phases)
        answer, _, _ = await self._in_a_unit(self.caps201.rate_units, lambda unit: P.station_max(
            self._sched(schedule, unit, max_periods=1)))
        return answer

    async def install_failsafe(self, connector_id: int, schedule: PowerSchedule
                               ) -> tuple[Answer, Installed | None]:
        answer, _, installed = await self._in_a_unit(
            self.caps201.rate_units,
            lambda unit: P.failsafe(connector_id, self._sched(schedule, unit)),
            in_flight=installed_from_request)
        if answer is Answer.NO_ANSWER:   # it may be taken all the same
            return answer, installed
        if answer is not Answer.ACCEPTED:
            return answer, None
        await self.verify(connector_id)
        return answer, installed

    async def set_idle_schedule(self, connector_id: int, schedule: PowerSchedule
                                ) -> tuple[Answer, Installed | None]:
        request = P.upper_default(connector_id, self._sched(schedule, self._unit))
        installed = installed_from_request(request)
        return answer_of(await self._send_plan(request, installed)), installed

    # --- a transaction's plan, with the alternatives ------------------------------------------
    async def set_connector_schedule(self, connector_id: int, transaction_id: int,
                                     schedule: PowerSchedule, *, raising: bool = False
                                     ) -> ScheduleResult:
        # the station's own transactionId for our session id (the adapter keeps the map)
        station_tx = await station_transaction(self.link, transaction_id)
        units = self._units_now_first(self.caps201.rate_units)
        # the TxProfile first; without the station's transaction id only the default can go
        modes = [station_tx, None] if station_tx is not None else [None]
        text = None
        for floor, tx, unit in self._attempts(schedule, modes, units):
            request = self._plan_request(connector_id, tx, schedule, unit, floor=floor)
            installed = installed_from_request(request, transaction_id)
            text = await self._send_plan(request, installed)
            if text == NO_ANSWER:
                return ScheduleResult(Answer.NO_ANSWER, installed, detail=text)
            if text != "Accepted":
                if tx is not None:
                    self.tx_refused.add((connector_id, transaction_id))
                continue
            self._unit = unit
            if tx is None:
                self._on_default.add(connector_id)
            else:
                self._on_default.discard(connector_id)
                self.tx_refused.discard((connector_id, transaction_id))
            return self._accepted(installed, floor)
        return ScheduleResult(Answer.REJECTED, None, detail=str(text))

    async def clear(self, connector_id: int) -> Answer:
        request = call.ClearChargingProfile(
            charging_profile_id=P.profile_id(connector_id, P.TX_PROFILE, self._tx_level))
        try:
            answer = await self._call(request)
            status = status_of(answer)
            log.info("station %s EVSE %d: TxProfile cleared (%s)", self.station_id,
                     connector_id, status)
            # "Unknown": nothing to clear (it ended with its transaction) is as good
            return Answer.ACCEPTED if status in ("Accepted", "Unknown") else Answer.REJECTED
        except (StationTimeout, StationCallError) as exc:
            log.warning("station %s EVSE %d: could not clear the TxProfile: %s",
                        self.station_id, connector_id, exc)
            return failed(exc)

    # --- what the station applies -----------------------------------------------------------
    async def verify(self, connector_id: int, duration_s: int = 3600
                     ) -> list[tuple[int, float]] | None:
        """GetCompositeSchedule of one EVSE in the current unit: [(offset s, limit)], or None
        when it cannot say (refused, no answer). Remembered in `verified`; a composite above
        what we installed is logged (the station applies something we did not send)."""
        request = call.GetCompositeSchedule(
            duration=duration_s, evse_id=connector_id,
            charging_rate_unit=ChargingRateUnitEnumType(self._unit))
        try:
            answer = await self._call(request)
        except (StationTimeout, StationCallError) as exc:
            log.info("station %s EVSE %d: no composite schedule (%s)", self.station_id,
                     connector_id, exc)
            self.verified[connector_id] = None
            return None
        status = status_of(answer)
        schedule = answer.schedule if status == "Accepted" else None
        if not schedule:
            self.verified[connector_id] = None
            return None
        schedule = schedule if isinstance(schedule, dict) else vars(schedule)
        periods = schedule.get("charging_schedule_period") or []
        out = [(int(_get(p, "start_period")), float(_get(p, "limit"))) for p in periods]
        self.verified[connector_id] = out
        return out

    def _composite_request(self, connector_id: int, duration_s: int) -> call.GetCompositeSchedule:
        return call.GetCompositeSchedule(duration=duration_s, evse_id=connector_id,
                                         charging_rate_unit=ChargingRateUnitEnumType(self._unit))

    def _composite_parts(self, answer) -> tuple:
        schedule = answer.schedule
        return _get(schedule, "schedule_start"), schedule

    def _trigger_request(self, connector_id: int) -> call.TriggerMessage:
        return call.TriggerMessage(requested_message="MeterValues", evse={"id": connector_id})

    # --- the wire (`_call`, `_put`: ControlPortBase) ----------------------------------------
    async def _send(self, request: dict) -> str:
        """One SetChargingProfile; returns "Accepted", "Rejected", a CALLERROR code or
        NO_ANSWER. Raises StationOffline when the station is gone."""
        problems = P.check_request(request, self.caps201.max_periods if self.caps201 else None)
        if problems:   # our bug: never put it on the wire
            raise ValueError(f"station {self.station_id}: {'; '.join(problems)}")
        if self.caps201 is not None and not self.caps201.enabled:
            # it says SmartChargingCtrlr.Enabled is false: it ignores whatever it is sent, even
            # where it answers Accepted. Refused here, not sent: its idle connectors' maximum
            # is kept free (site/unbounded.py), a car on it planned at its fallback. Read again
            # at its next set-up (a reconnect, a reboot, our API turning it on).
            if not self._said_off:
                self._said_off = True
                log.warning("station %s: SmartChargingCtrlr.Enabled is false - it ignores "
                            "charging profiles: none is sent, it is planned at its maximum",
                            self.station_id)
            return "Rejected"
        self.last_request = request
        message = call.SetChargingProfile(evse_id=request["evseId"],
                                          charging_profile=request["chargingProfile"])
        return await self._put(message, request)

    def _record(self, request: dict, answer: str) -> None:
        self.record(self.station_id, request["evseId"],
                    request["chargingProfile"]["chargingProfilePurpose"], request, answer)


def _get(item, name: str):
    if isinstance(item, dict):
        camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
        return item.get(name, item.get(camel))
    return getattr(item, name)


__all__ = ["V201StationPort", "installed_from_request"]
