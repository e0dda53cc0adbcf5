"""OCPP 2.0.1 charging profiles as a strict station takes them (Part 2, functional block K).

`parse` turns a SetChargingProfile payload into the shared `profiles.Profile` (the EVSE id is its
connector id; ChargingStationMaxProfile is the shared station-wide purpose), and `check` applies
the K01 rules a real station enforces before it installs anything; a broken rule raises
`ProfileRejected` with the reasonCode the station answers in statusInfo.
"""

from __future__ import annotations

from datetime import datetime

from smartcharge.clock import format_ocpp_time, parse_ocpp_time
from smartcharge.sim.profiles import (CHARGE_POINT_MAX, TX, Profile, ProfileRejected,
                                      TxContext, parse_schedule)

STATION_MAX = "ChargingStationMaxProfile"
EXTERNAL = "ChargingStationExternalConstraints"


def parse(evse_id: int, data: dict, installed_at: datetime) -> Profile:
    """A profile from the `ocpp` library's snake_case payload."""
    purpose = data["charging_profile_purpose"]
    if purpose == EXTERNAL:
        # K01.FR.22: only the station itself (or a local controller) sets external constraints
        raise ProfileRejected("a CSMS does not send ChargingStationExternalConstraints",
                              "InvalidProfile")
    schedules = data.get("charging_schedule") or []
    if not schedules:
        raise ProfileRejected("chargingSchedule is missing", "InvalidSchedule")
    valid_from, valid_to = data.get("valid_from"), data.get("valid_to")
    return Profile(
        profile_id=int(data["id"]),
        connector_id=evse_id,
        stack_level=int(data["stack_level"]),
        purpose=CHARGE_POINT_MAX if purpose == STATION_MAX else purpose,
        kind=data["charging_profile_kind"],
        # with ISO 15118 up to three schedules are offered to the car; the first one applies
        schedule=parse_schedule(schedules[0]),
        installed_at=installed_at,
        recurrency=data.get("recurrency_kind"),
        valid_from=None if valid_from is None else parse_ocpp_time(valid_from),
        valid_to=None if valid_to is None else parse_ocpp_time(valid_to),
        transaction_id=data.get("transaction_id"),
    )


def wire_purpose(profile: Profile) -> str:
    return STATION_MAX if profile.purpose == CHARGE_POINT_MAX else profile.purpose


def check(profile: Profile, installed: list[Profile], tx: TxContext | None) -> None:
    """The K01 rules; raises ProfileRejected naming the first one broken."""
    if profile.purpose == CHARGE_POINT_MAX:
        if profile.connector_id != 0:
            raise ProfileRejected("a ChargingStationMaxProfile goes on EVSE 0 only (K01.FR.38)",
                                  "InvalidProfile")
        if profile.kind == "Relative":
            raise ProfileRejected("a ChargingStationMaxProfile is never Relative (K01.FR.38)",
                                  "InvalidProfile")
    if profile.kind in ("Absolute", "Recurring") and profile.schedule.start is None:
        raise ProfileRejected(f"an {profile.kind} profile needs startSchedule (K01.FR.40)",
                              "InvalidSchedule")
    if profile.kind == "Relative" and profile.schedule.start is not None:
        raise ProfileRejected("a Relative profile has no startSchedule (K01.FR.41)",
                              "InvalidSchedule")
    if profile.kind == "Recurring" and profile.recurrency is None:
        raise ProfileRejected("a Recurring profile needs recurrencyKind", "InvalidProfile")
    if profile.purpose == TX:
        if profile.connector_id <= 0:
            raise ProfileRejected("a TxProfile needs evseId > 0 (K01.FR.16)", "InvalidProfile")
        if tx is None or profile.transaction_id is None \
                or profile.transaction_id != tx.transaction_id:
            raise ProfileRejected(
                f"a TxProfile needs the running transactionId (K01.FR.03), got "
                f"{profile.transaction_id!r}", "TxNotFound")
    for other in installed:
        if (other.profile_id != profile.profile_id and other.connector_id == profile.connector_id
                and other.purpose == profile.purpose and other.stack_level == profile.stack_level
                and _overlap(other, profile)):
            raise ProfileRejected(
                f"profile {other.profile_id} has the same stackLevel {profile.stack_level} and "
                f"purpose on EVSE {profile.connector_id} with an overlapping validity "
                f"(K01.FR.39)", "DuplicateProfile")


def _overlap(a: Profile, b: Profile) -> bool:
    """Do the validity periods [validFrom, validTo) of two profiles overlap (None = open)?"""
    return ((a.valid_to is None or b.valid_from is None or b.valid_from < a.valid_to)
            and (b.valid_to is None or a.valid_from is None or a.valid_from < b.valid_to))


def report(profile: Profile) -> dict:
    """The profile as ReportChargingProfiles carries it (snake_case for the `ocpp` library)."""
    schedule = profile.schedule
    out_schedule = {
        "id": profile.profile_id,
        "charging_rate_unit": schedule.rate_unit,
        "charging_schedule_period": [
            {"start_period": p.start_s, "limit": p.limit,
             **({"number_phases": p.number_phases} if p.number_phases else {})}
            for p in schedule.periods],
    }
    if schedule.start is not None:
        out_schedule["start_schedule"] = format_ocpp_time(schedule.start)
    if schedule.duration_s is not None:
        out_schedule["duration"] = schedule.duration_s
    out = {"id": profile.profile_id, "stack_level": profile.stack_level,
           "charging_profile_purpose": wire_purpose(profile),
           "charging_profile_kind": profile.kind, "charging_schedule": [out_schedule]}
    for key, value in (("recurrency_kind", profile.recurrency),
                       ("valid_from", profile.valid_from and format_ocpp_time(profile.valid_from)),
                       ("valid_to", profile.valid_to and format_ocpp_time(profile.valid_to)),
                       ("transaction_id", profile.transaction_id)):
        if value is not None:
            out[key] = value
    return out
