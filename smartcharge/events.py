"""Plain domain events the OCPP adapters publish and the site controller (and others) consume.

They carry no OCPP types: a v1.6 and a v2.0.1 adapter produce the same events. Every time is a
timezone-aware UTC datetime; units are in the names. Events are published only after the facts
they describe are committed to the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StationConnected:
    station_id: str
    at: datetime
    protocol: str                      # e.g. "ocpp1.6"


@dataclass(frozen=True)
class StationBooted:
    station_id: str
    at: datetime
    accepted: bool                     # False: the station was told Pending
    vendor: str
    model: str
    firmware_version: str | None = None
    sessions_closed: tuple[int, ...] = ()   # open sessions closed because the station rebooted


@dataclass(frozen=True)
class StationDisconnected:
    station_id: str
    at: datetime
    reason: str                        # "closed", "replaced", "ping timeout", "server shutdown"


@dataclass(frozen=True)
class ConnectorStatusChanged:
    station_id: str
    connector_id: int                  # 0 = the station as a whole
    status: str                        # OCPP ChargePointStatus, e.g. "Charging"
    error_code: str
    at: datetime                       # the station's own timestamp when it sent one
    # how `at` stood against our clock as it came (ocpp/clock_offset.py `stamp_reading`):
    # "in_step", "ahead" or "behind" - a status stamped before the one held is history unless
    # it is in step and the held one was ahead (`supersedes`)
    clock: str = "in_step"


@dataclass(frozen=True)
class ChargingStateChanged:
    """Whether a session's car takes the power its station offers, as the station says it:
    2.0.1 TransactionEvent's `chargingState` (Charging, SuspendedEV, SuspendedEVSE,
    EVConnected, Idle). 1.6 says the same in StatusNotification (`ConnectorStatusChanged`)."""

    station_id: str
    connector_id: int
    transaction_id: int
    state: str
    at: datetime                       # the station's own timestamp


@dataclass(frozen=True)
class SessionStarted:
    station_id: str
    connector_id: int
    transaction_id: int
    id_tag: str                        # "" while not known (2.0.1: the idToken may come later)
    meter_start_wh: float | None       # None: no start register known (2.0.1: its Started or
    at: datetime                       # Transaction.Begin reading was lost); samples tell
    closed_previous: int | None = None   # a session on this connector closed without its stop
    # where `meter_start_wh` was measured (2.0.1: its Transaction.Begin value's OCPP location);
    # None: not said (1.6's meterStart) - it starts whichever location's chain the samples use
    meter_start_location: str | None = None
    # announced by a message from the station's offline queue (2.0.1 `offline`): it began
    # while the station could not tell us, not now
    queued: bool = False


@dataclass(frozen=True)
class MeterSampled:
    """One sampling moment of one connector; None means "not in this sample", never zero."""

    station_id: str
    connector_id: int
    transaction_id: int | None
    at: datetime                       # the sample's own timestamp
    context: str                       # OCPP ReadingContext, e.g. "Sample.Periodic"
    energy_register_wh: float | None = None
    power_w: float | None = None
    current_a: tuple[float | None, float | None, float | None] = (None, None, None)  # L1..L3
    soc_percent: float | None = None
    # when we received it, by our clock: station clocks are wrong in the field, so a measurement
    # is aged by this (None: not known, aged by `at`)
    received_at: datetime | None = None
    # where `energy_register_wh` was measured (OCPP location): a session's live energy keeps to
    # one location's chain, the one its bill uses (metering.LiveEnergy)
    register_location: str = "Outlet"
    # the phases `energy_register_wh` sums (a meter that sends per-phase registers only); empty:
    # a total as the station sent it
    register_phases: frozenset[str] = frozenset()
    # where `power_w` and `current_a` were measured: the connector's draw is the outlet's once
    # it has one (site/state.py), not an inlet's (every connector's) sent in other messages
    draw_location: str = "Outlet"


@dataclass(frozen=True)
class SessionStopped:
    station_id: str
    connector_id: int | None           # None when the stop could not be matched to a session
    transaction_id: int
    at: datetime
    energy_wh: float | None            # billed energy; None when it cannot be established
    reason: str | None                 # OCPP Reason, or "NewSession"/"Reboot" when implicit
    implicit: bool = False             # closed without a StopTransaction


@dataclass(frozen=True)
class ReportedSchedule:
    """A schedule a station reported (an EV's or an external limit), version-neutral: `limits`
    in `unit` ("A" per phase, or "W") from `start` + `offsets_s[i]`; `phases[i]` None: not said.
    `start` None: from when it was reported."""

    start: datetime | None
    duration_s: int | None
    unit: str
    offsets_s: tuple[int, ...]
    limits: tuple[float, ...]
    phases: tuple[int | None, ...]


@dataclass(frozen=True)
class ChargingNeedsReported:
    """An EV told the station what it needs (ISO 15118, 2.0.1 NotifyEVChargingNeeds). None means
    "not said". The plan may take it as the session's need (`departure`, `energy_wh`)."""

    station_id: str
    connector_id: int                  # the EVSE
    transaction_id: int | None         # our session running on it, when there is one
    at: datetime                       # when we received it
    transfer_mode: str                 # e.g. "AC_three_phase_core", "DC"
    departure: datetime | None = None
    energy_wh: float | None = None     # energy the EV asks for
    max_current_a: float | None = None
    min_current_a: float | None = None
    max_power_w: float | None = None
    max_voltage_v: float | None = None
    soc_percent: float | None = None
    max_schedule_periods: int | None = None   # maxScheduleTuples


@dataclass(frozen=True)
class ExternalLimitReported:
    """A limit set outside us (the station's own energy manager, a DSO relay, EMS): 2.0.1
    NotifyChargingLimit. The site treats it as fixed; we never send such profiles (K01.FR.22)."""

    station_id: str
    connector_id: int | None           # the EVSE; None: the whole station
    at: datetime
    source: str                        # EMS, Other, SO, CSO
    grid_critical: bool | None = None
    schedules: tuple[ReportedSchedule, ...] = ()


@dataclass(frozen=True)
class ExternalLimitCleared:
    station_id: str
    connector_id: int | None
    at: datetime
    source: str


@dataclass(frozen=True)
class ChargingProfilesReported:
    """Profiles a station holds, as it reported them (2.0.1 ReportChargingProfiles, the answer
    to a GetChargingProfiles): raw camelCase JSON objects, for the version's control port."""

    station_id: str
    connector_id: int                  # the EVSE (0: the station as a whole)
    at: datetime
    request_id: int
    source: str                        # chargingLimitSource: CSO (ours), EMS, SO, Other
    profiles: tuple[dict, ...]
    more_to_come: bool                 # tbc: another report for this request follows


@dataclass(frozen=True)
class StationProfilesCleared:
    """A ClearChargingProfile not of the site's making reached the station (an operator's,
    through the REST API), answered or not - or smart charging was turned on again there (2.0.1
    SetVariables SmartChargingCtrlr.Enabled): what the site installed there may be gone."""

    station_id: str
    at: datetime


@dataclass(frozen=True)
class StationClockMeasured:
    """How far a station's clock runs from ours, as its messages' stamps show
    (`ocpp/clock_offset.py`), moved by a second or more (None: not known): what it was sent
    on another offset may have to be sent again on its clock (`site/failsafe.py`)."""

    station_id: str
    at: datetime
    offset_s: float | None
    # its clock was seen set to ours without a reboot (`ClockOffset._set_to_ours`): what it
    # holds went out on its old clock, sent again even if that was done once already
    clock_set: bool = False


Event = (StationConnected | StationBooted | StationDisconnected | ConnectorStatusChanged
         | SessionStarted | MeterSampled | SessionStopped | ChargingNeedsReported
         | ExternalLimitReported | ExternalLimitCleared | ChargingProfilesReported
         | StationProfilesCleared | StationClockMeasured)

Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out. A failing subscriber is logged and skipped, never breaks the sender.

    Subscribers must be quick and must not block: one that needs to do I/O schedules a task.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it again."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers \
            else None

    def publish(self, event: Event) -> None:
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a task boundary: one consumer's bug must not stop the adapter
                log.exception("event subscriber %r failed on %s (station %s)", subscriber,
                              type(event).__name__, getattr(event, "station_id", "?"))
