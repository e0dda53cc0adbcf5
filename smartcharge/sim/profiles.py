"""A charge point's smart-charging logic, as OCPP 1.6 section 3.13 describes it.

Profiles are installed per connector (0 = the whole charge point) by purpose and stackLevel. At a
given moment, within each purpose the valid profile with the highest stackLevel prevails; a
TxProfile overrules the TxDefaultProfile for its transaction; the ChargePointMaxProfile caps
everything. The composite limit is the minimum of what prevails. Limits are kept in the unit they
arrived in and converted to W only where a station applies them: current is per phase, so the
conversion needs the voltage and the number of phases actually in use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smartcharge.clock import parse_ocpp_time

CHARGE_POINT_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
PURPOSES = (CHARGE_POINT_MAX, TX_DEFAULT, TX)
RECURRENCE_S = {"Daily": 86_400, "Weekly": 7 * 86_400}
_BREAKPOINT_HORIZON_S = 8 * 86_400


class ProfileRejected(ValueError):
    """A profile this charge point will not install; the message says why, `reason_code` says
    it as an OCPP 2.0.1 statusInfo reasonCode would (at most 20 characters)."""

    def __init__(self, message: str, reason_code: str = "InvalidProfile") -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True)
class Period:
    start_s: int                      # seconds from the schedule's start
    limit: float                      # in the schedule's rate unit
    number_phases: int | None = None


@dataclass(frozen=True)
class Schedule:
    rate_unit: str                    # "A" (per phase) or "W"
    periods: tuple[Period, ...]
    duration_s: int | None = None
    start: datetime | None = None
    min_rate: float | None = None


@dataclass(frozen=True)
class Profile:
    profile_id: int
    connector_id: int
    stack_level: int
    purpose: str
    kind: str                         # Absolute | Recurring | Relative
    schedule: Schedule
    installed_at: datetime
    recurrency: str | None = None     # Daily | Weekly, for Recurring
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: int | None = None


@dataclass(frozen=True)
class TxContext:
    """What a connector's running transaction means for its profiles."""

    transaction_id: int | None        # None while the start is not yet answered
    started_at: datetime


@dataclass(frozen=True)
class Capabilities:
    """The smart-charging configuration keys a station announces (GetConfiguration)."""

    max_stack_level: int = 10
    max_periods: int = 24
    allowed_units: tuple[str, ...] = ("Current", "Power")
    max_installed: int = 16


def _get(data: dict, snake: str, camel: str, default=None):
    if snake in data:
        return data[snake]
    return data.get(camel, default)


def _float_or_none(value) -> float | None:
    # the `ocpp` library hands schedule numbers over as Decimal (for its multipleOf check)
    return None if value is None else float(value)


def _time_or_none(text) -> datetime | None:
    return None if text is None else parse_ocpp_time(text)


def parse_schedule(raw: dict | None) -> Schedule:
    """A charging schedule from the OCPP payload (the same shape in 1.6 and 2.0.1)."""
    if raw is None:
        raise ProfileRejected("chargingSchedule is missing", "InvalidSchedule")
    periods = tuple(
        Period(
            start_s=int(_get(p, "start_period", "startPeriod")),
            limit=float(p["limit"]),
            number_phases=_get(p, "number_phases", "numberPhases"),
        )
        for p in _get(raw, "charging_schedule_period", "chargingSchedulePeriod", [])
    )
    if not periods:
        raise ProfileRejected("chargingSchedulePeriod is empty", "InvalidSchedule")
    if periods[0].start_s != 0:
        raise ProfileRejected("the first chargingSchedulePeriod must start at 0",
                              "InvalidSchedule")    # 2.0.1 K01.FR.31
    if any(b.start_s <= a.start_s for a, b in zip(periods, periods[1:])):
        raise ProfileRejected("chargingSchedulePeriod startPeriod values must increase",
                              "InvalidSchedule")
    schedule = Schedule(
        rate_unit=_get(raw, "charging_rate_unit", "chargingRateUnit"),
        periods=periods,
        duration_s=_get(raw, "duration", "duration"),
        start=_time_or_none(_get(raw, "start_schedule", "startSchedule")),
        min_rate=_float_or_none(_get(raw, "min_charging_rate", "minChargingRate")),
    )
    if schedule.rate_unit not in ("A", "W"):
        raise ProfileRejected(f"chargingRateUnit must be A or W, got {schedule.rate_unit!r}",
                              "UnsupportedRateUnit")
    return schedule


def parse_profile(connector_id: int, data: dict, installed_at: datetime) -> Profile:
    """A 1.6 profile from the OCPP payload (snake_case as the `ocpp` library delivers, or
    camelCase)."""
    return Profile(
        profile_id=int(_get(data, "charging_profile_id", "chargingProfileId")),
        connector_id=connector_id,
        stack_level=int(_get(data, "stack_level", "stackLevel")),
        purpose=_get(data, "charging_profile_purpose", "chargingProfilePurpose"),
        kind=_get(data, "charging_profile_kind", "chargingProfileKind"),
        schedule=parse_schedule(_get(data, "charging_schedule", "chargingSchedule")),
        installed_at=installed_at,
        recurrency=_get(data, "recurrency_kind", "recurrencyKind"),
        valid_from=_time_or_none(_get(data, "valid_from", "validFrom")),
        valid_to=_time_or_none(_get(data, "valid_to", "validTo")),
        transaction_id=_get(data, "transaction_id", "transactionId"),
    )


@dataclass(frozen=True)
class Limit:
    value: float
    unit: str                         # "A" per phase or "W"
    number_phases: int | None

    def to_w(self, voltage_v: float, phases_in_use: int, *,
             honour_phases: bool = True) -> float:
        """`honour_phases` False: a station that cannot hold a car to fewer phases (no
        phase switching) lets it draw an A limit on every phase it uses."""
        if self.unit == "W":
            return self.value
        phases = phases_in_use if not honour_phases else min(self.number_phases or 3,
                                                             phases_in_use)
        return self.value * voltage_v * phases


def _schedule_start(profile: Profile, at: datetime, tx: TxContext | None) -> datetime | None:
    if profile.kind == "Relative":
        return tx.started_at if tx is not None else at
    start = profile.schedule.start or profile.installed_at
    if profile.kind == "Recurring":
        cycle_s = RECURRENCE_S.get(profile.recurrency or "Daily", 86_400)
        elapsed_s = (at - start).total_seconds()
        return start + timedelta(seconds=(elapsed_s // cycle_s) * cycle_s)
    return start


def _applies(profile: Profile, at: datetime, tx: TxContext | None) -> bool:
    if profile.valid_from is not None and at < profile.valid_from:
        return False
    if profile.valid_to is not None and at >= profile.valid_to:
        return False
    if profile.purpose == TX:
        if tx is None:
            return False
        if profile.transaction_id is not None and tx.transaction_id is not None:
            return profile.transaction_id == tx.transaction_id
    return True


def profile_limit(profile: Profile, at: datetime, tx: TxContext | None) -> Limit | None:
    """The limit this one profile sets at `at`, or None where it sets none."""
    if not _applies(profile, at, tx):
        return None
    start = _schedule_start(profile, at, tx)
    offset_s = (at - start).total_seconds()
    if offset_s < 0:
        return None
    if profile.schedule.duration_s is not None and offset_s >= profile.schedule.duration_s:
        return None
    current = None
    for period in profile.schedule.periods:
        if period.start_s <= offset_s:
            current = period
        else:
            break
    if current is None:
        return None
    return Limit(current.limit, profile.schedule.rate_unit, current.number_phases)


def _breakpoints(profile: Profile, after: datetime, until: datetime,
                 tx: TxContext | None) -> list[datetime]:
    """Moments in (after, until] where this profile's limit may change."""
    moments = [m for m in (profile.valid_from, profile.valid_to) if m is not None]
    if profile.kind == "Recurring":
        cycle_s = RECURRENCE_S.get(profile.recurrency or "Daily", 86_400)
        cycle_start = _schedule_start(profile, after, tx)
        starts = []
        while cycle_start <= until:
            starts.append(cycle_start)
            cycle_start += timedelta(seconds=cycle_s)
    else:
        starts = [_schedule_start(profile, after, tx)]
    for start in starts:
        moments.extend(start + timedelta(seconds=p.start_s) for p in profile.schedule.periods)
        if profile.schedule.duration_s is not None:
            moments.append(start + timedelta(seconds=profile.schedule.duration_s))
    return [m for m in moments if after < m <= until]


@dataclass
class ProfileStore:
    """The profiles installed on one charge point, and the composite limits they make."""

    connector_ids: tuple[int, ...]
    capabilities: Capabilities = field(default_factory=Capabilities)
    profiles: list[Profile] = field(default_factory=list)
    # False: the station cannot hold a car to a profile's numberPhases (quirk
    # `ignore_number_phases`): an A limit holds on every phase the car uses
    honours_number_phases: bool = True

    def install(self, profile: Profile, tx: TxContext | None, *,
                replace_same_level: bool = True) -> None:
        """Install or replace; raise ProfileRejected naming the rule it breaks. The same id
        replaces; so does (1.6) the same connector, purpose and stack level."""
        caps = self.capabilities
        if profile.purpose not in PURPOSES:
            raise ProfileRejected(f"unknown chargingProfilePurpose {profile.purpose!r}")
        if profile.connector_id != 0 and profile.connector_id not in self.connector_ids:
            raise ProfileRejected(f"no connector {profile.connector_id}", "UnknownEvse")
        if profile.purpose == CHARGE_POINT_MAX and profile.connector_id != 0:
            raise ProfileRejected("a ChargePointMaxProfile goes on connector 0 only")
        if profile.purpose == TX:
            if profile.connector_id == 0:
                raise ProfileRejected("a TxProfile needs a connector, not 0")
            if tx is None:
                raise ProfileRejected("a TxProfile needs a transaction on its connector",
                                      "TxNotFound")
            if (profile.transaction_id is not None and tx.transaction_id is not None
                    and profile.transaction_id != tx.transaction_id):
                raise ProfileRejected(
                    f"transactionId {profile.transaction_id} is not the running one "
                    f"({tx.transaction_id})", "TxNotFound")
        if profile.stack_level > caps.max_stack_level:
            raise ProfileRejected(
                f"stackLevel {profile.stack_level} > ChargeProfileMaxStackLevel "
                f"{caps.max_stack_level}", "InvalidStackLevel")
        if len(profile.schedule.periods) > caps.max_periods:
            raise ProfileRejected(
                f"{len(profile.schedule.periods)} periods > ChargingScheduleMaxPeriods "
                f"{caps.max_periods}", "TooManyPeriods")
        unit_name = "Current" if profile.schedule.rate_unit == "A" else "Power"
        if unit_name not in caps.allowed_units:
            raise ProfileRejected(f"chargingRateUnit {profile.schedule.rate_unit} not supported",
                                  "UnsupportedRateUnit")
        kept = [p for p in self.profiles
                if p.profile_id != profile.profile_id
                and not (replace_same_level
                         and p.connector_id == profile.connector_id
                         and p.purpose == profile.purpose
                         and p.stack_level == profile.stack_level)]
        if len(kept) + 1 > caps.max_installed:
            raise ProfileRejected(f"MaxChargingProfilesInstalled ({caps.max_installed}) reached",
                                  "TooManyProfiles")
        self.profiles = kept + [profile]

    def clear(self, *, profile_id: int | None = None, connector_id: int | None = None,
              purpose: str | None = None, stack_level: int | None = None) -> int:
        """Remove matching profiles (ClearChargingProfile semantics); return how many."""
        def matches(p: Profile) -> bool:
            if profile_id is not None:
                return p.profile_id == profile_id
            return ((connector_id is None or p.connector_id == connector_id)
                    and (purpose is None or p.purpose == purpose)
                    and (stack_level is None or p.stack_level == stack_level))
        before = len(self.profiles)
        self.profiles = [p for p in self.profiles if not matches(p)]
        return before - len(self.profiles)

    def end_transaction(self, connector_id: int) -> None:
        """A TxProfile lives as long as its transaction (OCPP 1.6 3.13.4)."""
        self.profiles = [p for p in self.profiles
                         if not (p.purpose == TX and p.connector_id == connector_id)]

    def _prevailing(self, purpose: str, connector_ids: tuple[int, ...], at: datetime,
                    tx: TxContext | None) -> Limit | None:
        candidates = sorted(
            (p for p in self.profiles if p.purpose == purpose and p.connector_id in connector_ids),
            # highest stackLevel first; on a tie the connector's own profile beats connector 0's
            key=lambda p: (p.stack_level, p.connector_id != 0),
            reverse=True,
        )
        for profile in candidates:
            limit = profile_limit(profile, at, tx)
            if limit is not None:
                return limit
        return None

    def station_limit(self, at: datetime) -> Limit | None:
        """The ChargePointMaxProfile limit for the whole charge point, if any."""
        return self._prevailing(CHARGE_POINT_MAX, (0,), at, None)

    def connector_limits(self, connector_id: int, at: datetime,
                         tx: TxContext | None) -> list[Limit]:
        """Every limit in force on a connector (the composite is their minimum)."""
        limits = []
        tx_limit = self._prevailing(TX, (connector_id,), at, tx) if tx is not None else None
        if tx_limit is None:
            tx_limit = self._prevailing(TX_DEFAULT, (connector_id, 0), at, tx)
        for limit in (tx_limit, self.station_limit(at)):
            if limit is not None:
                limits.append(limit)
        return limits

    def limit_w(self, connector_id: int, at: datetime, tx: TxContext | None, *,
                voltage_v: float, phases_in_use: int) -> float | None:
        """The composite limit on a connector in W, or None where no profile limits it."""
        limits = self.connector_limits(connector_id, at, tx)
        if not limits:
            return None
        return min(limit.to_w(voltage_v, phases_in_use, honour_phases=self.honours_number_phases)
                   for limit in limits)

    def next_change(self, after: datetime, tx_by_connector: dict[int, TxContext | None],
                    horizon_s: float = _BREAKPOINT_HORIZON_S) -> datetime | None:
        """The first moment after `after` where any installed profile's limit may change."""
        until = after + timedelta(seconds=horizon_s)
        moments = []
        for profile in self.profiles:
            # a connector-0 profile applies to every connector, each relative to its own
            # transaction (a Relative schedule starts with the transaction)
            contexts = (set(tx_by_connector.values()) or {None}) if profile.connector_id == 0 \
                else {tx_by_connector.get(profile.connector_id)}
            for tx in contexts:
                moments.extend(_breakpoints(profile, after, until, tx))
        return min(moments, default=None)

    def composite_schedule(self, connector_id: int, start: datetime, duration_s: int,
                           unit: str, tx: TxContext | None, *, voltage_v: float,
                           phases: int, fallback_w: float) -> Schedule:
        """GetCompositeSchedule: the composite limit over [start, start + duration_s).

        Stretches no profile covers are filled with `fallback_w` (the connector's own maximum),
        so the schedule has no holes.
        """
        end = start + timedelta(seconds=duration_s)
        relevant = [p for p in self.profiles
                    if p.connector_id in ((0,) if connector_id == 0 else (0, connector_id))]
        moments = {start}
        for profile in relevant:
            moments.update(m for m in _breakpoints(profile, start, end, tx) if m < end)
        periods: list[Period] = []
        for moment in sorted(moments):
            if connector_id == 0:
                limit = self.station_limit(moment)
                limit_w = fallback_w if limit is None else min(
                    limit.to_w(voltage_v, phases), fallback_w)
            else:
                limit_w = self.limit_w(connector_id, moment, tx, voltage_v=voltage_v,
                                       phases_in_use=phases)
                limit_w = fallback_w if limit_w is None else min(limit_w, fallback_w)
            value = limit_w if unit == "W" else limit_w / (voltage_v * phases)
            value = int(value * 10) / 10.0   # the schema's multipleOf 0.1, rounded down
            if periods and periods[-1].limit == value:
                continue
            periods.append(Period(int((moment - start).total_seconds()), value, phases))
        return Schedule(rate_unit=unit, periods=tuple(periods), duration_s=duration_s,
                        start=start)
