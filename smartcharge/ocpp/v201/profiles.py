"""Power schedules -> OCPP 2.0.1 SetChargingProfile requests (camelCase dicts, as on the wire).
Pure.

The layers, per station (our connector id is the 2.0.1 evseId; connector 1 of that EVSE):

| purpose                    | evseId | stackLevel | validity              | what for              |
|----------------------------|--------|------------|-----------------------|-----------------------|
| ChargingStationMaxProfile  | 0      | 0          | no end                | the station's maximum |
| TxDefaultProfile           | n      | 0          | no end                | fail-safe share       |
| TxDefaultProfile           | n      | 1          | validTo = its end     | idle share, or the    |
|                            |        |            |                       | plan when TxProfiles  |
|                            |        |            |                       | are refused           |
| TxProfile                  | n      | 1          | the transaction       | the plan              |

Rules a 2.0.1 station enforces (Part 2, K01), kept here by construction:
- the first startPeriod is 0 (K01.FR.31): `schedules.schedule_rates` starts at 0;
- Absolute only: startSchedule always present (FR.40), never Relative (FR.41, FR.38);
- ChargingStationMaxProfile only on EVSE 0 (FR.38); TxProfile only on an EVSE > 0 with the
  station's own transactionId (FR.03, FR.16); never ChargingStationExternalConstraints (FR.22);
- no two profiles with the same purpose and stackLevel on one EVSE (one transaction for
  TxProfiles) overlap in validity (FR.06, FR.39): every (EVSE, purpose, stack level) has one
  fixed profile id, so a re-send REPLACES by id (FR.05) and never stands beside its predecessor;
- periods <= PeriodsPerSchedule (merged, the minimum of what is merged: never more power);
- numberPhases 1..3 on every period; phaseToUse never (only with ACPhaseSwitchingSupported).
`check_request` says what breaks a rule (a last guard before anything goes out).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from smartcharge.clock import format_ocpp_time
from smartcharge.ocpp.schedules import schedule_rates

TX_PROFILE = "TxProfile"
TX_DEFAULT_PROFILE = "TxDefaultProfile"
STATION_MAX_PROFILE = "ChargingStationMaxProfile"
EXTERNAL_PROFILE = "ChargingStationExternalConstraints"   # the station's, never ours (FR.22)

FAILSAFE_LEVEL = 0   # TxDefaultProfile with no end: what an EVSE runs if we disappear
UPPER_LEVEL = 1      # above it: the idle share / a plan as default, and every TxProfile
_PURPOSE_CODE = {TX_PROFILE: 1, TX_DEFAULT_PROFILE: 2, STATION_MAX_PROFILE: 3}


def profile_id(evse_id: int, purpose: str, stack_level: int = 0) -> int:
    """One id per (EVSE, purpose, stack level) of a station: a re-send replaces (FR.05)."""
    return 2000 + 10 * evse_id + _PURPOSE_CODE[purpose] + 4 * stack_level


def is_ours(pid: int) -> bool:
    """Whether a profile id is one `profile_id` makes (any EVSE, purpose, level)."""
    if pid < 2000:
        return False
    rest = (pid - 2000) % 10
    return any(rest == code + 4 * level for code in _PURPOSE_CODE.values() for level in (0, 1))


def charging_schedule(start: datetime, offsets_s: list[float], limits: list[float], *,
                      unit: str, phases: int, max_periods: int, schedule_id: int,
                      duration_s: int | None = None, min_rate: float | None = None) -> dict:
    """A 2.0.1 ChargingScheduleType: the shared schedule shape plus its required `id`."""
    if phases not in (1, 2, 3):
        raise ValueError(f"numberPhases: must be 1..3, got {phases}")
    sched = schedule_rates(start, offsets_s, limits, unit=unit, phases=phases,
                           max_periods=max_periods, duration_s=duration_s, min_rate=min_rate)
    return {"id": schedule_id, **sched}


def set_charging_profile(evse_id: int, purpose: str, sched: dict, *, stack_level: int,
                         transaction_id: str | None = None, bounded: bool = False) -> dict:
    """The whole SetChargingProfile request. `bounded`: valid only until the schedule ends
    (validFrom/validTo), so a lapsed idle layer cannot be mistaken for a live one."""
    pid = profile_id(evse_id, purpose, stack_level)
    profile: dict = {"id": pid, "stackLevel": int(stack_level),
                     "chargingProfilePurpose": purpose, "chargingProfileKind": "Absolute",
                     "chargingSchedule": [dict(sched, id=pid)]}
    if purpose == TX_PROFILE:
        profile["transactionId"] = transaction_id
    if bounded and "duration" in sched:
        start = datetime.fromisoformat(sched["startSchedule"].replace("Z", "+00:00"))
        profile["validFrom"] = sched["startSchedule"]
        profile["validTo"] = format_ocpp_time(start + timedelta(seconds=sched["duration"]))
    request = {"evseId": int(evse_id), "chargingProfile": profile}
    problems = check_request(request)
    if problems:
        raise ValueError(f"SetChargingProfile breaks OCPP 2.0.1 K01: {'; '.join(problems)}")
    return request


def station_max(sched: dict) -> dict:
    return set_charging_profile(0, STATION_MAX_PROFILE, sched, stack_level=0)


def failsafe(evse_id: int, sched: dict) -> dict:
    return set_charging_profile(evse_id, TX_DEFAULT_PROFILE, sched, stack_level=FAILSAFE_LEVEL)


def upper_default(evse_id: int, sched: dict) -> dict:
    """The idle share, or a plan sent as the EVSE's default: one id, so each replaces the
    other."""
    return set_charging_profile(evse_id, TX_DEFAULT_PROFILE, sched, stack_level=UPPER_LEVEL,
                                bounded=True)


def tx_profile(evse_id: int, transaction_id: str, sched: dict,
               stack_level: int = UPPER_LEVEL) -> dict:
    """A TxProfile overrules every TxDefaultProfile whatever their levels: level 0 serves as
    well for a station with ProfileStackLevel 0."""
    return set_charging_profile(evse_id, TX_PROFILE, sched, stack_level=stack_level,
                                transaction_id=transaction_id)


def check_request(request: dict, max_periods: int | None = None) -> list[str]:
    """What in one SetChargingProfile request breaks a K01 rule a station enforces on its own
    (empty: none). The rules across installed profiles (FR.06/39) are the ids' business."""
    problems = []
    evse_id = request["evseId"]
    profile = request["chargingProfile"]
    purpose = profile["chargingProfilePurpose"]
    kind = profile["chargingProfileKind"]
    if purpose == EXTERNAL_PROFILE:
        problems.append("FR.22: ChargingStationExternalConstraints is set by the station only")
    if purpose == STATION_MAX_PROFILE and (evse_id != 0 or kind == "Relative"):
        problems.append("FR.38: ChargingStationMaxProfile on EVSE 0 and not Relative")
    if purpose == TX_PROFILE:
        if evse_id <= 0:
            problems.append("FR.16: a TxProfile needs evseId > 0")
        tx = profile.get("transactionId")
        if not isinstance(tx, str) or not 0 < len(tx) <= 36:
            problems.append("FR.03: a TxProfile needs the station's transactionId (<= 36)")
    elif "transactionId" in profile:
        problems.append("transactionId only on a TxProfile")
    for sched in profile["chargingSchedule"]:
        periods = sched["chargingSchedulePeriod"]
        if periods[0]["startPeriod"] != 0:
            problems.append("FR.31: the first startPeriod is 0")
        starts = [p["startPeriod"] for p in periods]
        if starts != sorted(set(starts)):
            problems.append("startPeriods rise strictly")
        if kind in ("Absolute", "Recurring") and "startSchedule" not in sched:
            problems.append("FR.40: startSchedule is required for Absolute/Recurring")
        if kind == "Relative" and "startSchedule" in sched:
            problems.append("FR.41: no startSchedule for Relative")
        if max_periods is not None and len(periods) > max_periods:
            problems.append(f"{len(periods)} periods > PeriodsPerSchedule {max_periods}")
        for period in periods:
            if period.get("numberPhases", 3) not in (1, 2, 3) or "phaseToUse" in period:
                problems.append("numberPhases 1..3 and no phaseToUse")
            if period["limit"] < 0:
                problems.append("limits are >= 0")
    return sorted(set(problems))


__all__ = ["FAILSAFE_LEVEL", "STATION_MAX_PROFILE", "TX_DEFAULT_PROFILE", "TX_PROFILE",
           "UPPER_LEVEL", "charging_schedule", "check_request", "failsafe", "is_ours", "profile_id",
           "set_charging_profile", "station_max", "tx_profile", "upper_default"]
