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


@dataclass(frozen=True)
class SessionStarted:
    station_id: str
    connector_id: int
    transaction_id: int
    id_tag: str
    meter_start_wh: float
    at: datetime
    closed_previous: int | None = None   # a session on this connector closed without its stop


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


@dataclass(frozen=True)
class SessionStopped:
    station_id: str
    connector_id: int | None           # None when the stop could not be matched to a session
    transaction_id: int
    at: datetime
    energy_wh: float | None            # billed energy; None when it cannot be established
    reason: str | None                 # OCPP Reason, or "NewSession"/"Reboot" when implicit
    implicit: bool = False             # closed without a StopTransaction


Event = (StationConnected | StationBooted | StationDisconnected | ConnectorStatusChanged
         | SessionStarted | MeterSampled | SessionStopped)

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
