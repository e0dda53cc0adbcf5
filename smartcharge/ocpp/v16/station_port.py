"""The control port for an OCPP 1.6J station: where a SetChargingProfile leaves (`_send`).

What 1.6 says in its own way is here; the plumbing both versions share (the call with retries,
the wire and its audit row, the order in which a plan's alternatives are tried) is
`ocpp/port_base.py`.

- capabilities: GetConfiguration of the smart-charging keys, once;
- the station's maximum: a ChargePointMaxProfile on connector 0; fail-safe defaults: a
  TxDefaultProfile per connector at stack level 0 with no end; an idle share: a TxDefaultProfile
  at stack level 1 with an end (the "fallback" profile id);
- a transaction's plan: a TxProfile, and when refused the documented alternatives, in order - the
  other rate unit, the plan as a TxDefaultProfile on the connector, the minimum rate instead of 0
  - the unit and the minimum are remembered for the station, a refused TxProfile for the
  transaction (`_learn`);
- every request and its answer goes to the recorder (the audit table).
"""

from __future__ import annotations

import logging
from datetime import datetime

from ocpp.v16 import call
from ocpp.v16.enums import ChargingRateUnitType

from smartcharge.ocpp.port import Answer, Capabilities, Installed, PowerSchedule, ScheduleResult
from smartcharge.ocpp.port_base import (NO_ANSWER, ControlPortBase, answer_of, failed,
                                        installed_from_profile, limits_in, status_of)
from smartcharge.ocpp.registry import StationCallError, StationTimeout
from smartcharge.ocpp.v16 import profiles as P

log = logging.getLogger("smartcharge.site.dispatch")

CONFIG_KEYS = ["ChargeProfileMaxStackLevel", "ChargingScheduleMaxPeriods",
               "ChargingScheduleAllowedChargingRateUnit", "MaxChargingProfilesInstalled",
               "NumberOfConnectors", "ConnectorSwitch3to1PhaseSupported"]


def parse_capabilities(values: dict) -> P.Capabilities:
    """GetConfiguration values -> Capabilities; unknown or unreadable keys keep the defaults."""
    base = P.Capabilities()

    def as_int(key, default):
        try:
            return int(str(values.get(key)).strip())
        except (TypeError, ValueError):
            return default
    units_text = values.get("ChargingScheduleAllowedChargingRateUnit")
    units = base.rate_units
    if units_text:
        names = [u.strip() for u in str(units_text).split(",")]
        parsed = tuple(u for u, name in (("A", "Current"), ("W", "Power")) if name in names)
        units = parsed or units
    return P.Capabilities(
        max_stack_level=max(as_int("ChargeProfileMaxStackLevel", base.max_stack_level), 0),
        max_periods=max(as_int("ChargingScheduleMaxPeriods", base.max_periods), 1),
        rate_units=units,
        max_profiles_installed=as_int("MaxChargingProfilesInstalled", None),
        connectors=as_int("NumberOfConnectors", None),
        phase_switching=str(values.get("ConnectorSwitch3to1PhaseSupported")).strip().lower()
        == "true")


def installed_from_payload(payload: dict, transaction_id: int = 0) -> Installed:
    """What a SetChargingProfile payload installs (its one schedule)."""
    profile = payload["csChargingProfiles"]
    return installed_from_profile(profile, profile["chargingSchedule"], transaction_id)


class V16StationPort(ControlPortBase):
    def __init__(self, *args, **kwargs) -> None:   # ControlPortBase's: link, clock, record, ...
        super().__init__(*args, **kwargs)
        self.caps16: P.Capabilities | None = None
        # Which transactions' plans go out as the connector's TxDefaultProfile, learned from
        # refusals, per transaction. A refusal is often a race or a stale picture (the car
        # left before we heard: the station has no such transaction), which says nothing of
        # the next transaction: a plan goes out as the default only for a transaction whose
        # TxProfile was refused twice - or once, while the station's last word on TxProfiles
        # was such a double refusal (`refuses_tx`) - and a transaction never refused tries a
        # TxProfile first. One accepted TxProfile clears `refuses_tx`. (The station used to
        # be switched to defaults for the connection by the first double refusal: a stale
        # transaction id switched one that takes TxProfiles for good.)
        self.tx_refused: set[tuple[int, int]] = set()      # refused once
        self.tx_on_default: set[tuple[int, int]] = set()   # plans go out as the default
        self.refuses_tx = False
        self.last_payload: dict | None = None

    # --- what the site reads ----------------------------------------------------------------
    @property
    def caps(self) -> Capabilities | None:
        c = self.caps16
        if c is None:
            return None
        # built once per capabilities read (both frozen): a dispatch round asks every station
        # (5 000 objects built in one step of the loop, issue 10)
        if getattr(self, "_caps_of", None) is not c:
            self._caps = Capabilities(rate_units=c.rate_units, max_periods=c.max_periods,
                                      idle_layer=c.max_stack_level >= 1,
                                      max_profiles_installed=c.max_profiles_installed,
                                      connectors=c.connectors, phase_switching=c.phase_switching)
            self._caps_of = c
        return self._caps

    # --- capabilities -----------------------------------------------------------------------
    async def capabilities(self) -> Capabilities:
        if self.caps16 is None:
            self.caps16 = await self._read_capabilities()
            if "A" not in self.caps16.rate_units and self.caps16.rate_units:
                self._unit = self.caps16.rate_units[0]
        return self.caps

    async def _read_capabilities(self) -> P.Capabilities:
        try:
            try:
                answer = await self._call(call.GetConfiguration(key=list(CONFIG_KEYS)))
            except StationCallError as exc:
                if exc.code not in ("OccurenceConstraintViolation",
                                    "OccurrenceConstraintViolation"):
                    raise
                # more keys than its GetConfigurationMaxKeys: without keys it lists them all
                answer = await self._call(call.GetConfiguration())
        except StationCallError as exc:
            log.info("station %s: GetConfiguration refused (%s); assuming defaults",
                     self.station_id, exc)
            return P.Capabilities()
        values = {}
        for item in answer.configuration_key or []:
            key = item.get("key") if isinstance(item, dict) else getattr(item, "key", None)
            value = item.get("value") if isinstance(item, dict) else getattr(item, "value", None)
            values[key] = value
        return parse_capabilities(values)

    # --- payloads ---------------------------------------------------------------------------
    def _schedule(self, schedule: PowerSchedule, unit: str, *, floor: bool = False,
                  max_periods: int | None = None, any_car: bool = False) -> dict:
        limits, minimum = limits_in(schedule, unit, floor=floor, any_car=any_car)
        return P.schedule_rates(
            schedule.start, schedule.offsets_s, limits, unit=unit, phases=schedule.phases,
            max_periods=schedule.periods_allowed(max_periods or self.caps16.max_periods),
            duration_s=schedule.duration_s,
            min_rate=minimum)

    def _plan_payload(self, connector_id: int, transaction_id: int, schedule: PowerSchedule,
                      *, floor: bool, as_default: bool, unit: str) -> dict:
        # as the connector's default it limits whatever car is there, not only the planned one
        sched = self._schedule(schedule, unit, floor=floor, any_car=as_default)
        if as_default:
            return P.set_charging_profile(connector_id, P.TX_DEFAULT_PROFILE, sched,
                                          stack_level=min(1, self.caps16.max_stack_level),
                                          fallback=True)
        return P.set_charging_profile(connector_id, P.TX_PROFILE, sched,
                                      stack_level=min(1, self.caps16.max_stack_level),
                                      transaction_id=transaction_id)

    def preview(self, connector_id: int, transaction_id: int, schedule: PowerSchedule, *,
                floor: bool) -> Installed:
        as_default = (connector_id, transaction_id) in self.tx_on_default
        payload, installed = self._built(connector_id, transaction_id, schedule, floor=floor,
                                         as_default=as_default, unit=self._unit)
        # kept on the schedule (frozen, and dropped with it): a decrease is sent with the
        # schedule its comparison previewed, and its first attempt is this payload - built
        # and read back once, not twice (~1 000 plans in a DR event at 1 000 connectors)
        schedule.__dict__["_previewed"] = (
            (self, connector_id, transaction_id, floor, as_default, self._unit,
             self.caps16), payload, installed)
        return installed

    def _built(self, connector_id: int, transaction_id: int, schedule: PowerSchedule, *,
               floor: bool, as_default: bool, unit: str) -> tuple[dict, Installed]:
        """(the payload of one attempt, what it installs); the preview's when it was this."""
        kept = schedule.__dict__.get("_previewed")
        if kept is not None and kept[0] == (self, connector_id, transaction_id, floor,
                                            as_default, unit, self.caps16):
            return kept[1], kept[2]
        payload = self._plan_payload(connector_id, transaction_id, schedule, floor=floor,
                                     as_default=as_default, unit=unit)
        return payload, installed_from_payload(payload, transaction_id)

    # --- fail-safe, idle ----------------------------------------------------------------------
    async def install_station_max(self, power_w: float, current_a: float,
                                  phases: int, start: datetime | None = None) -> Answer:
        now = self.clock.now() if start is None else start

        def payload(unit: str) -> dict:
            rate = current_a if unit == "A" else power_w
            sched = P.schedule_rates(now, [0], [rate], unit=unit, phases=phases, max_periods=1)
            return P.set_charging_profile(0, P.CHARGE_POINT_MAX_PROFILE, sched, stack_level=0)
        answer, _, _ = await self._in_a_unit(self._rate_units(), payload)
        return answer

    async def install_failsafe(self, connector_id: int, schedule: PowerSchedule
                               ) -> tuple[Answer, Installed | None]:
        answer, _, installed = await self._in_a_unit(
            self._rate_units(),
            lambda unit: P.set_charging_profile(connector_id, P.TX_DEFAULT_PROFILE,
                                                self._schedule(schedule, unit), stack_level=0),
            in_flight=installed_from_payload)
        if answer in (Answer.ACCEPTED, Answer.NO_ANSWER):   # unanswered: it may be taken
            return answer, installed
        return answer, None

    def _rate_units(self) -> tuple[str, ...]:
        return self.caps16.rate_units if self.caps16 is not None else ()

    async def set_idle_schedule(self, connector_id: int, schedule: PowerSchedule
                                ) -> tuple[Answer, Installed | None]:
        sched = self._schedule(schedule, self._unit)
        payload = P.set_charging_profile(connector_id, P.TX_DEFAULT_PROFILE, sched,
                                         stack_level=min(1, self.caps16.max_stack_level),
                                         fallback=True)
        installed = installed_from_payload(payload)
        return answer_of(await self._send_plan(payload, installed)), installed

    # --- a transaction's plan, with the alternatives ------------------------------------------
    async def set_connector_schedule(self, connector_id: int, transaction_id: int,
                                     schedule: PowerSchedule, *, raising: bool = False
                                     ) -> ScheduleResult:
        key = (connector_id, transaction_id)
        self._forget_other_transactions(key)
        units = self._units_now_first(self.caps16.rate_units)
        on_default = key in self.tx_on_default
        modes = [on_default, not on_default]
        text = None
        for floor, as_default, unit in self._attempts(schedule, modes, units):
            payload, installed = self._built(connector_id, transaction_id, schedule,
                                             floor=floor, as_default=as_default, unit=unit)
            text = await self._send_plan(payload, installed)
            if text == "Accepted":
                self._unit = unit
                self._learn(key, tx_profile_refused=as_default and not on_default,
                            tx_profile_taken=not as_default)
                return self._accepted(installed, floor)
            if text == NO_ANSWER:
                return ScheduleResult(Answer.NO_ANSWER, installed, detail=text)
        return ScheduleResult(Answer.REJECTED, None, detail=str(text))

    def _learn(self, key: tuple[int, int], *, tx_profile_refused: bool,
               tx_profile_taken: bool) -> None:
        """What an accepted plan says of the station's TxProfiles (see `__init__`)."""
        if tx_profile_taken:
            self.refuses_tx = False
            self.tx_refused.discard(key)
            self.tx_on_default.discard(key)
        elif tx_profile_refused:
            if key in self.tx_refused or self.refuses_tx:
                self.tx_on_default.add(key)
                self.refuses_tx = True
            self.tx_refused.add(key)

    def _forget_other_transactions(self, key: tuple[int, int]) -> None:
        """A plan for a connector's transaction: what was learned of its earlier ones goes
        (bounded memory on a connection that lives for months)."""
        connector_id = key[0]
        for learned in (self.tx_refused, self.tx_on_default):
            for old in [k for k in learned if k[0] == connector_id and k != key]:
                learned.discard(old)

    async def clear(self, connector_id: int) -> Answer:
        request = call.ClearChargingProfile(id=P.profile_id(connector_id, P.TX_PROFILE))
        try:
            answer = await self._call(request)
            status = status_of(answer)
            log.info("station %s connector %d: old TxProfile cleared (%s)", self.station_id,
                     connector_id, status)
            # "Unknown": nothing to clear (it ended with its transaction) is as good
            return Answer.ACCEPTED if status in ("Accepted", "Unknown") else Answer.REJECTED
        except (StationTimeout, StationCallError) as exc:
            log.warning("station %s connector %d: could not clear the old TxProfile: %s",
                        self.station_id, connector_id, exc)
            return failed(exc)

    def _composite_request(self, connector_id: int, duration_s: int) -> call.GetCompositeSchedule:
        return call.GetCompositeSchedule(connector_id=connector_id, duration=duration_s,
                                         charging_rate_unit=ChargingRateUnitType(self._unit))

    def _composite_parts(self, answer) -> tuple:
        return answer.schedule_start, answer.charging_schedule

    def _trigger_request(self, connector_id: int) -> call.TriggerMessage:
        return call.TriggerMessage(requested_message="MeterValues", connector_id=connector_id)

    # --- the wire (`_call`, `_put`: ControlPortBase) ----------------------------------------
    async def _send(self, payload: dict) -> str:
        """One SetChargingProfile; returns the answer ("Accepted", "Rejected", "NotSupported",
        a CALLERROR code, or NO_ANSWER). Raises StationOffline when the station is gone."""
        self.last_payload = payload
        request = call.SetChargingProfile(connector_id=payload["connectorId"],
                                          cs_charging_profiles=payload["csChargingProfiles"])
        return await self._put(request, payload)

    def _record(self, payload: dict, answer: str) -> None:
        self.record(self.station_id, payload["connectorId"],
                    payload["csChargingProfiles"]["chargingProfilePurpose"], payload, answer)


__all__ = ["CONFIG_KEYS", "V16StationPort", "installed_from_payload", "parse_capabilities"]
