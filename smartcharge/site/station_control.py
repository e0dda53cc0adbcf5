"""What dispatch knows of one station: its capabilities, what it was told and accepted - the
TxProfile per connector, the stack-1 TxDefaultProfile under it, the fail-safe default under
that - and the GetConfiguration answer that says what it takes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from smartcharge.clock import parse_ocpp_time
from smartcharge.ocpp.v16 import profiles as P

FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class Sent:
    """What a connector was last told (accepted)."""

    transaction_id: int
    start: datetime
    expires: datetime
    unit: str
    phases: int
    starts_s: list[int]
    limits: list[float]
    purpose: str = P.TX_PROFILE

    def rate_at(self, moment: datetime) -> float | None:
        if moment >= self.expires:
            return None
        offset = (moment - self.start).total_seconds()
        rate = self.limits[0]
        for start_s, limit in zip(self.starts_s, self.limits):
            if start_s <= offset:
                rate = limit
        return rate


@dataclass
class StationControl:
    station_id: str
    caps: P.Capabilities | None = None
    unit: str = "A"
    use_tx_default: bool = False       # the station refuses TxProfiles: plan via TxDefault
    zero_ok: bool = True               # False: it refuses limit 0; pause at the minimum
    # (connector, transaction) whose TxProfile was refused once. A refusal is often a race (the
    # car left before we heard), so the station is only switched to TxDefault plans when the
    # same, still open transaction refuses its TxProfile a second time.
    tx_refused: set[tuple[int, int]] = field(default_factory=set)
    defaults_root_w: float | None = None   # the grid limit the defaults were sized for, now
    defaults_key: tuple | None = None      # (limit now, later (moment, limit) changes) sent
    sent: dict[int, Sent] = field(default_factory=dict)   # connector id -> last accepted
    idle_sent: dict[int, tuple[float, datetime]] = field(default_factory=dict)  # W, expires
    # what the station has installed under the TxProfile, as accepted: its stack-1
    # TxDefaultProfile (idle share or a TxDefault plan) and its fail-safe default
    idle_layer: dict[int, Sent] = field(default_factory=dict)
    default_layer: dict[int, Sent] = field(default_factory=dict)
    last_payload: dict | None = None       # what the last _send really sent (alternatives)
    setup_link: object | None = None       # the connection the fail-safe setup went out on
    resend: bool = False                   # set up again: send every plan, changed or not
    booted_link: object | None = None      # the connection a BootNotification came on
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def layer_from_payload(payload: dict) -> Sent:
    """What a TxDefaultProfile payload installs, as a Sent (no transaction)."""
    sched = payload["csChargingProfiles"]["chargingSchedule"]
    periods = sched["chargingSchedulePeriod"]
    start = parse_ocpp_time(sched["startSchedule"])
    expires = start + timedelta(seconds=sched["duration"]) if "duration" in sched else FOREVER
    return Sent(0, start, expires, sched["chargingRateUnit"], periods[0].get("numberPhases", 3),
                [p["startPeriod"] for p in periods], [float(p["limit"]) for p in periods],
                purpose=P.TX_DEFAULT_PROFILE)


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
        max_profiles_installed=as_int("MaxChargingProfilesInstalled", None))
