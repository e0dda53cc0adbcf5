"""Allocations -> OCPP 1.6 SetChargingProfile payloads (camelCase dicts, as on the wire). Pure.

Rules every payload here follows:
- limits are rounded DOWN to the 0.1 the schema requires (`multipleOf 0.1`): never more than
  the allocation;
- the limit is in the station's unit: A per phase (power / (phases x voltage)) or W, with
  `numberPhases` set;
- absolute profiles carry `startSchedule` at or just before `now` (whole seconds, truncated),
  never in the future: a future start would leave a gap with no limit;
- profile ids are fixed per (connector, purpose), so a re-send replaces, never stacks;
- a schedule never has more periods than the station accepts: adjacent periods are merged and
  the merged limit is the minimum of what it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from smartcharge import units
# one copy of the schedule math for both versions (re-exported here for 1.6's callers)
from smartcharge.ocpp.schedules import merge_periods, round_down_01, schedule_rates  # noqa: F401

TX_PROFILE = "TxProfile"
TX_DEFAULT_PROFILE = "TxDefaultProfile"
CHARGE_POINT_MAX_PROFILE = "ChargePointMaxProfile"
_PURPOSE_CODE = {TX_PROFILE: 1, TX_DEFAULT_PROFILE: 2, CHARGE_POINT_MAX_PROFILE: 3}


@dataclass(frozen=True)
class Capabilities:
    """What a station says it accepts (GetConfiguration), with conservative defaults."""

    max_stack_level: int = 3
    max_periods: int = 24
    rate_units: tuple[str, ...] = ("A", "W")   # "Current" -> "A", "Power" -> "W"
    max_profiles_installed: int | None = None
    connectors: int | None = None               # NumberOfConnectors
    phase_switching: bool = False               # ConnectorSwitch3to1PhaseSupported


def profile_id(connector_id: int, purpose: str, *, fallback: bool = False) -> int:
    """Deterministic per (connector, purpose) within a station: a re-send replaces."""
    return 1000 + 10 * connector_id + _PURPOSE_CODE[purpose] + (4 if fallback else 0)


def power_to_rate(power_w: float, unit: str, phases: int, voltage_v: float) -> float:
    """Power [W] -> the station's unit, rounded down to 0.1 (A per phase or W)."""
    if unit == "A":
        return round_down_01(units.w_to_a(power_w, phases, voltage_v))
    if unit == "W":
        return round_down_01(power_w)
    raise ValueError(f"chargingRateUnit: must be 'A' or 'W', got {unit!r}")


def rate_to_power(rate: float, unit: str, phases: int, voltage_v: float) -> float:
    return units.rate_to_w(rate, unit, phases, voltage_v)


def schedule(start: datetime, period_starts_s: list[float], powers_w: list[float], *, unit: str,
             phases: int, voltage_v: float, max_periods: int, duration_s: int | None = None,
             min_power_w: float | None = None) -> dict:
    """A chargingSchedule from per-period powers [W] beginning at start (period_starts_s[0] is 0).
    """
    rates = [power_to_rate(p, unit, phases, voltage_v) for p in powers_w]
    min_rate = power_to_rate(min_power_w, unit, phases, voltage_v) if min_power_w else None
    return schedule_rates(start, period_starts_s, rates, unit=unit, phases=phases,
                          max_periods=max_periods, duration_s=duration_s, min_rate=min_rate)


def set_charging_profile(connector_id: int, purpose: str, charging_schedule: dict, *,
                         stack_level: int, transaction_id: int | None = None,
                         fallback: bool = False) -> dict:
    """The whole SetChargingProfile request payload (camelCase, as on the wire)."""
    profile: dict = {
        "chargingProfileId": profile_id(connector_id, purpose, fallback=fallback),
        "stackLevel": int(stack_level),
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": charging_schedule,
    }
    if purpose == TX_PROFILE:
        if transaction_id is None:
            raise ValueError("transaction_id: a TxProfile needs the transaction it is for")
        profile["transactionId"] = int(transaction_id)
    return {"connectorId": int(connector_id), "csChargingProfiles": profile}


def tx_profile(connector_id: int, transaction_id: int, now: datetime,
               period_starts_s: list[float], powers_w: list[float], *, unit: str, phases: int,
               voltage_v: float, caps: Capabilities, duration_s: int | None = None,
               min_power_w: float | None = None, stack_level: int = 1) -> dict:
    return _profile(connector_id, TX_PROFILE, now, period_starts_s, powers_w, unit=unit,
                    phases=phases, voltage_v=voltage_v, caps=caps, duration_s=duration_s,
                    min_power_w=min_power_w, stack_level=stack_level,
                    transaction_id=transaction_id)


def tx_default_profile(connector_id: int, now: datetime, period_starts_s: list[float],
                       powers_w: list[float], *, unit: str, phases: int, voltage_v: float,
                       caps: Capabilities, duration_s: int | None = None, stack_level: int = 0,
                       min_power_w: float | None = None, fallback: bool = False) -> dict:
    """TxDefaultProfile on one connector. stack_level 0 with no duration is the fail-safe default;
    a higher stack level with a duration carries a plan for a station that refuses TxProfiles."""
    return _profile(connector_id, TX_DEFAULT_PROFILE, now, period_starts_s, powers_w,
                    unit=unit, phases=phases, voltage_v=voltage_v, caps=caps,
                    duration_s=duration_s, min_power_w=min_power_w, stack_level=stack_level,
                    fallback=fallback)


def _profile(connector_id: int, purpose: str, now: datetime, period_starts_s: list[float],
             powers_w: list[float], *, unit: str, phases: int, voltage_v: float,
             caps: Capabilities, duration_s: int | None, min_power_w: float | None,
             stack_level: int, **extra) -> dict:
    sched = schedule(now, period_starts_s, powers_w, unit=unit, phases=phases,
                     voltage_v=voltage_v, max_periods=caps.max_periods, duration_s=duration_s,
                     min_power_w=min_power_w)
    return set_charging_profile(connector_id, purpose, sched,
                                stack_level=min(stack_level, caps.max_stack_level), **extra)


def charge_point_max_profile(now: datetime, power_w: float, *, unit: str, phases: int,
                             voltage_v: float) -> dict:
    """The station's own maximum on connector 0, with no end."""
    sched = schedule(now, [0], [power_w], unit=unit, phases=phases, voltage_v=voltage_v,
                     max_periods=1)
    return set_charging_profile(0, CHARGE_POINT_MAX_PROFILE, sched, stack_level=0)


def profile_limit_at(payload: dict, offset_s: float) -> float:
    """The limit (station unit) in force offset_s after startSchedule."""
    periods = payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
    current = periods[0]["limit"]
    for period in periods:
        if period["startPeriod"] <= offset_s:
            current = period["limit"]
    return current
