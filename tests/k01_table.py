"""A strict OCPP 2.0.1 station's charging-profile table (Part 2, K01), written from the spec
independently of `smartcharge/ocpp/v201/profiles.py`: what it refuses and why, what it keeps,
and its composite schedule. Used by the test station (`tests/ocpp201_station.py`) and by the
profile unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from smartcharge.clock import parse_ocpp_time

FAR = datetime(9999, 1, 1, tzinfo=UTC)


def _validity(profile: dict) -> tuple[datetime, datetime]:
    start = parse_ocpp_time(profile["validFrom"]) if "validFrom" in profile else \
        datetime(1970, 1, 1, tzinfo=UTC)
    end = parse_ocpp_time(profile["validTo"]) if "validTo" in profile else FAR
    return start, end


@dataclass
class K01Table:
    max_stack_level: int = 3
    max_periods: int = 24
    rate_units: tuple[str, ...] = ("A", "W")
    entries: int = 20
    iso15118: bool = False          # K15.FR.17: refuse a TxProfile before the EV's needs
    profiles: dict[int, tuple[int, dict]] = field(default_factory=dict)   # id -> (evse, p)
    transactions: dict[int, str] = field(default_factory=dict)            # evse -> tx id
    needs_reported: set[str] = field(default_factory=set)                 # tx ids
    refusals: list[str] = field(default_factory=list)

    def set(self, evse_id: int, profile: dict) -> tuple[str, str]:
        """("Accepted", "") or ("Rejected", the rule)."""
        reason = self._refuse(evse_id, profile)
        if reason:
            self.refusals.append(reason)
            return "Rejected", reason
        self.profiles[profile["id"]] = (evse_id, profile)
        return "Accepted", ""

    def _refuse(self, evse_id: int, p: dict) -> str:
        purpose, kind = p["chargingProfilePurpose"], p["chargingProfileKind"]
        if purpose == "ChargingStationExternalConstraints":
            return "K01.FR.22"
        if purpose == "ChargingStationMaxProfile" and (evse_id != 0 or kind == "Relative"):
            return "K01.FR.38"
        if purpose == "TxProfile":
            if evse_id <= 0 or "transactionId" not in p:
                return "K01.FR.03/16"
            if self.transactions.get(evse_id) != p["transactionId"]:
                return "K01.FR.09 (no such transaction on the EVSE)"
            if self.iso15118 and p["transactionId"] not in self.needs_reported:
                return "K15.FR.17 (no NotifyEVChargingNeeds yet)"
        elif "transactionId" in p:
            return "K01.FR.03 (transactionId only on a TxProfile)"
        if not 0 <= p["stackLevel"] <= self.max_stack_level:
            return "stackLevel above ChargingProfileMaxStackLevel"
        for sched in p["chargingSchedule"]:
            periods = sched["chargingSchedulePeriod"]
            if periods[0]["startPeriod"] != 0:
                return "K01.FR.31"
            if kind in ("Absolute", "Recurring") and "startSchedule" not in sched:
                return "K01.FR.40"
            if kind == "Relative" and "startSchedule" in sched:
                return "K01.FR.41"
            if len(periods) > self.max_periods:
                return "PeriodsPerSchedule"
            if sched["chargingRateUnit"] not in self.rate_units:
                return "K01.FR.26 (RateUnit)"
            if any(q.get("numberPhases", 3) not in (1, 2, 3) or "phaseToUse" in q
                   for q in periods):
                return "numberPhases/phaseToUse"
        start, end = _validity(p)
        for pid, (evse, other) in self.profiles.items():
            if pid == p["id"] or evse != evse_id or other["stackLevel"] != p["stackLevel"] \
                    or other["chargingProfilePurpose"] != purpose:
                continue
            if purpose == "TxProfile" and other.get("transactionId") != p.get("transactionId"):
                continue
            other_start, other_end = _validity(other)
            if start < other_end and other_start < end:
                return "K01.FR.39" if purpose == "TxProfile" else "K01.FR.06"
        if p["id"] not in self.profiles and len(self.profiles) >= self.entries:
            return "Entries (ChargingProfiles full)"
        return ""

    def end_transaction(self, evse_id: int) -> None:
        """K01.FR.?: a TxProfile ends with its transaction."""
        tx = self.transactions.pop(evse_id, None)
        for pid, (evse, p) in list(self.profiles.items()):
            if p["chargingProfilePurpose"] == "TxProfile" and p.get("transactionId") == tx:
                del self.profiles[pid]

    def clear(self, profile_id: int | None = None, evse_id: int | None = None,
              purpose: str | None = None, stack_level: int | None = None) -> bool:
        hit = [pid for pid, (evse, p) in self.profiles.items()
               if (profile_id is None or pid == profile_id)
               and (evse_id is None or evse == evse_id)
               and (purpose is None or p["chargingProfilePurpose"] == purpose)
               and (stack_level is None or p["stackLevel"] == stack_level)]
        for pid in hit:
            del self.profiles[pid]
        return bool(hit)

    def limit_at(self, evse_id: int, moment: datetime, unit: str) -> float | None:
        """The composite limit of an EVSE at `moment` (in `unit` only: the test station does
        not convert): the lowest of the station maximum and the top TxProfile (running
        transaction) or else the top TxDefaultProfile (the EVSE's own, else EVSE 0)."""
        def active(purpose: str, evses: tuple[int, ...]):
            found = []
            for evse, p in self.profiles.values():
                if evse not in evses or p["chargingProfilePurpose"] != purpose:
                    continue
                if purpose == "TxProfile" and p.get("transactionId") != \
                        self.transactions.get(evse_id):
                    continue
                value = _schedule_value(p, moment, unit)
                if value is not None:
                    found.append((p["stackLevel"], evse, value))
            return max(found)[2] if found else None
        tx = active("TxProfile", (evse_id,)) if evse_id in self.transactions else None
        own = tx if tx is not None else active("TxDefaultProfile", (evse_id, 0))
        cap = active("ChargingStationMaxProfile", (0,))
        values = [v for v in (own, cap) if v is not None]
        return min(values) if values else None


def _schedule_value(p: dict, moment: datetime, unit: str) -> float | None:
    start, end = _validity(p)
    if not start <= moment < end:
        return None
    sched = p["chargingSchedule"][0]
    if sched["chargingRateUnit"] != unit:
        return None
    begin = parse_ocpp_time(sched["startSchedule"])
    offset = (moment - begin).total_seconds()
    if offset < 0 or ("duration" in sched and offset >= sched["duration"]):
        return None
    value = None
    for period in sched["chargingSchedulePeriod"]:
        if period["startPeriod"] <= offset:
            value = float(period["limit"])
    return value


def composite_periods(table: K01Table, evse_id: int, start: datetime, duration_s: int,
                      unit: str) -> list[dict]:
    """The composite schedule as periods (startPeriod, limit), sampled at every boundary."""
    moments = {0}
    for _, p in table.profiles.values():
        sched = p["chargingSchedule"][0]
        begin = parse_ocpp_time(sched["startSchedule"])
        for period in sched["chargingSchedulePeriod"]:
            offset = int((begin - start).total_seconds()) + period["startPeriod"]
            if 0 < offset < duration_s:
                moments.add(offset)
        if "duration" in sched:
            offset = int((begin - start).total_seconds()) + sched["duration"]
            if 0 < offset < duration_s:
                moments.add(offset)
    out = []
    for offset in sorted(moments):
        value = table.limit_at(evse_id, start + timedelta(seconds=offset), unit)
        if value is None:
            continue
        if not out or out[-1]["limit"] != value:
            out.append({"startPeriod": offset, "limit": value})
    return out
