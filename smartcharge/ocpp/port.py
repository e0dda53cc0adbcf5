"""The control port: what the site may ask of any station, whatever OCPP version it speaks.

The site (`site/dispatch.py`) talks only to this. Each protocol package implements it: `ocpp/v16/`
turns a schedule into a SetChargingProfile (purposes, stack levels, GetConfiguration probing and
the rejection alternatives stay there); a `v201` package joins behind the same port.

Units are explicit: a `PowerSchedule` carries every period both as W for the connector and as A
per phase, and the port sends whichever the station takes; what it installed comes back as an
`Installed` record in the unit it used. The site never sees a payload.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


class Answer(enum.Enum):
    """The outcome of one request to a station."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"      # refused in any way (Rejected, NotSupported, a CALLERROR)
    NO_ANSWER = "no answer"    # timed out: it may have been applied all the same


@dataclass(frozen=True)
class Capabilities:
    """What a station says it takes, with conservative defaults (version-neutral)."""

    rate_units: tuple[str, ...] = ("A", "W")   # "A" per phase, "W" for the connector
    max_periods: int = 24                      # periods per schedule
    idle_layer: bool = True    # a short-lived idle schedule may sit above the fail-safe default
    max_profiles_installed: int | None = None
    connectors: int | None = None      # as the station counts them (None: not said)
    phase_switching: bool = False      # it can switch a car from 3 phases to 1 and back


@dataclass(frozen=True)
class PowerSchedule:
    """Limits per period from `start` (offsets_s[0] is 0), in both units: `power_w` for a limit
    in W on the connector, `current_a` per phase on `phases` phases. `min_*`: the least the car
    may be paused at where 0 is refused; `duration_s` None: no end.

    `any_car_w_factor` (None: 1): the W limits (and minimum) for the plan sent as the
    connector's default (TxDefaultProfile), which limits whatever car is plugged in, not only
    the one planned, are the plan's times it: a single-phase car draws all its W on one phase,
    so under per-phase limits a W default gets the per-phase share of a three-phase plan.
    `any_car_a_divisor`: such a default's A limits are the plan's divided by it - 3 for a plan
    for a single-phase car on a three-phase connector, since a three-phase car draws an A limit
    on every phase (a station that cannot switch phases ignores numberPhases); an A limit of a
    three-phase plan is safe as it is (1)."""

    start: datetime
    offsets_s: list[float]
    power_w: list[float]
    current_a: list[float]
    phases: int
    duration_s: int | None = None
    min_power_w: float | None = None
    min_current_a: float | None = None
    pauses: bool = False       # the plan pauses the car soon (limit 0 in its first periods)
    any_car_w_factor: float | None = None
    any_car_a_divisor: float = 1.0
    # the most periods its car takes (`Session.ev_max_periods`); None: the station's most. The
    # port merges periods down to it as to the station's (never above the plan: their minimum)
    max_periods: int | None = None

    def periods_allowed(self, station_most: int) -> int:
        """The most periods this schedule may go out in, where the station takes
        `station_most`."""
        if self.max_periods is None:
            return station_most
        return max(1, min(station_most, self.max_periods))

    def in_unit(self, unit: str, *, any_car: bool = False) -> tuple[list[float], float | None]:
        """(limits, minimum) in `unit`: the plan's, or those for any car (`any_car`: sent as
        the connector's default)."""
        if unit == "A":
            divisor = self.any_car_a_divisor if any_car else 1.0
            if divisor == 1.0:
                return list(self.current_a), self.min_current_a
            return ([a / divisor for a in self.current_a],
                    (self.min_current_a or 0.0) / divisor or None)
        factor = self.any_car_w_factor if any_car else None
        if factor is None:
            return list(self.power_w), self.min_power_w
        return [w * factor for w in self.power_w], (self.min_power_w or 0.0) * factor or None


@dataclass(frozen=True)
class Installed:
    """What a connector was told (and, when accepted, runs): limits in `unit` ("A" per phase or
    "W") from `start`, until `expires`. `default`: the connector's default schedule (outlives a
    transaction; an idle share or a plan for a station that refuses transaction schedules)."""

    transaction_id: int
    start: datetime
    expires: datetime
    unit: str
    phases: int
    starts_s: list[int]
    limits: list[float]
    default: bool = False

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
class ScheduleResult:
    """The outcome of `set_connector_schedule`: `installed` is what went out last (accepted, or
    unanswered); `floored` True when the station refused 0 and took the minimum instead (it
    will from now on); `detail` the station's own word for a refusal."""

    answer: Answer
    installed: Installed | None = None
    floored: bool = False
    detail: str = ""


@dataclass
class PortSettings:
    call_timeout_s: float = 10.0
    retries: int = 1
    # how far a station's clock may disagree with ours before the absolute times it is sent
    # (and reads back) are moved onto its clock (`port_base.ControlPortBase.station_shift_s`)
    edge_margin_s: float = 5.0


# (station, connector, what kind of schedule, what went out, answer): the audit table's row
Recorder = Callable[[str, int, str, dict, str], None]


class UnknownProtocol(LookupError):
    """A station connected with a protocol no port implements (see `ocpp/ports.py`)."""


class StationPort(ABC):
    """One station over one connection, as the site sees it: made when the station connects
    (`ocpp/ports.py` picks the class by the negotiated protocol) and bound to that link, so a
    reconnect gets a fresh port. Raises `StationOffline` once that connection is gone."""

    station_id: str

    @property
    @abstractmethod
    def caps(self) -> Capabilities | None:
        """What the last probe found (None: not probed yet)."""

    @property
    @abstractmethod
    def unit(self) -> str:
        """The unit the station is addressed in now ("A" or "W")."""

    @property
    @abstractmethod
    def zero_ok(self) -> bool:
        """False once it refused a limit of 0: pauses go out at the minimum."""

    # set by dispatch once it sent everything again on the station's clock (once per port)
    resent_on_its_clock = False

    def sent_off_its_clock(self) -> bool:
        """Whether what this port sent went out on another offset of the station's clock than
        it now shows, by more than the edge margin (`port_base.py`): to be sent again."""
        return False

    def sending_all_again(self) -> None:
        """Dispatch sends everything again now, on the station's clock (`port_base.py`)."""
        self.resent_on_its_clock = True

    def clock_set(self) -> None:
        """Its clock was seen set to ours (`StationClockMeasured.clock_set`): what it holds
        went out on its old clock and may be sent again once more."""
        self.resent_on_its_clock = False

    @abstractmethod
    async def capabilities(self) -> Capabilities:
        """Probe once (remembered); a station that refuses the probe gets the defaults."""

    @abstractmethod
    async def install_station_max(self, power_w: float, current_a: float,
                                  phases: int, start: datetime | None = None) -> Answer:
        """The station's own maximum, with no end, from `start` (None: now). The caller
        starts it a little before now, as the fail-safe defaults (`site/edges.py`): on a
        station whose clock is behind ours a start at our now is in its future."""

    @abstractmethod
    async def install_failsafe(self, connector_id: int, schedule: PowerSchedule
                               ) -> tuple[Answer, Installed | None]:
        """The connector's fail-safe default (what it runs if we disappear); what was sent
        when it is accepted or left unanswered (it may be taken), else None. A StationOffline
        raised once it went out carries it as `in_flight`, as `set_connector_schedule`."""

    @abstractmethod
    def preview(self, connector_id: int, transaction_id: int, schedule: PowerSchedule, *,
                floor: bool) -> Installed:
        """What `set_connector_schedule` would install now, in the current unit and mode."""

    @abstractmethod
    async def set_connector_schedule(self, connector_id: int, transaction_id: int,
                                     schedule: PowerSchedule, *, raising: bool = False
                                     ) -> ScheduleResult:
        """The plan of a running transaction, trying the station's alternatives on refusal.
        A StationOffline raised once a request went out carries it as `in_flight` (an
        `Installed`): the station may have taken it before it went."""

    @abstractmethod
    async def set_idle_schedule(self, connector_id: int, schedule: PowerSchedule
                                ) -> tuple[Answer, Installed | None]:
        """A short-lived default above the fail-safe: the share a car arriving now may draw
        (what was sent, whatever the answer; `in_flight` on StationOffline, as
        `set_connector_schedule`)."""

    @abstractmethod
    async def clear(self, connector_id: int) -> Answer:
        """Remove the transaction schedule of a connector (a default now carries its plan)."""

    async def trigger_meter_values(self, connector_id: int) -> Answer:
        """Ask the station for a meter sample of `connector_id` now (TriggerMessage
        MeterValues): what a new car's per-phase currents say of its phases, in seconds rather
        than at the next periodic sample (site/phase_probe.py). One call, no retry; a station
        that says it does not implement it is not asked again on this connection. The sample
        itself comes as any MeterValues does. Raises StationOffline once the connection is
        gone."""
        return Answer.REJECTED

    async def composite(self, connector_id: int, duration_s: int) -> Installed | None:
        """What the station applies on a connector from now for `duration_s`, as it says
        (GetCompositeSchedule in the current unit): an `Installed` (transaction 0) from the
        station's start of the schedule, or None when it cannot say (refused, unsupported, no
        answer). Asked after a restart for transactions an earlier process may have sent
        profiles (site/installed_restore.py). Raises StationOffline once the connection is
        gone."""
        return None

    def profiles_reported(self, event) -> None:
        """The station reported profiles it holds (`events.ChargingProfilesReported`, the
        answer to the port's own question after a (re)connection); a version without such
        reports ignores it. Never awaits: called from the event bus."""


# link, recorder, voltage_v=, unit=, settings= -> the port for that connection; raises
# UnknownProtocol for a protocol without a port
PortFactory = Callable[..., StationPort]

__all__ = ["Answer", "Capabilities", "FOREVER", "Installed", "PortFactory", "PortSettings",
           "PowerSchedule", "Recorder", "ScheduleResult", "StationPort", "UnknownProtocol"]
