"""What a simulated station is (its spec and quirks) and the state of its connectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from smartcharge import model as domain
from smartcharge.sim.ev import SimEV
from smartcharge.sim.profiles import TxContext


OCPP_VERSIONS = ("1.6", "2.0.1")


@dataclass(frozen=True)
class Quirks:
    """Ways real stations misbehave, for the controller's tests."""

    reject_all_profiles: bool = False
    reject_zero_limit: bool = False
    only_rate_unit: str | None = None      # "A" or "W": the other unit is rejected
    max_periods: int | None = None         # ChargingScheduleMaxPeriods
    max_config_keys: int | None = None     # GetConfigurationMaxKeys (more: a CALLERROR)
    ignore_profiles: bool = False          # accepts profiles, then draws what the car wants
    forget_profiles_on_reboot: bool = False
    silent_profiles: bool = False          # SetChargingProfile is answered only when released
    # refuses a TxDefaultProfile whose limits are all 0 (one under a charging car)
    reject_zero_defaults: bool = False
    keep_old_profiles: bool = False        # answers Accepted but keeps applying what it had
    reject_tx_profiles: bool = False       # refuses TxProfiles (takes TxDefaultProfiles)
    reject_station_max: bool = False       # refuses a ChargePointMaxProfile (takes no such one)
    # cannot hold a car to fewer phases than it uses (no 3-to-1 phase switching): a limit in
    # A holds on every phase the car draws on, whatever the profile's numberPhases says
    ignore_number_phases: bool = False
    silent_clears: bool = False            # ClearChargingProfile is answered only when released
    silent_configuration: bool = False     # 1.6 GetConfiguration answered only when released
    # OCPP 2.0.1: the transaction starts at plug-in (TxStartPoint EVConnected) and the idToken
    # comes in a later TransactionEvent (Updated, triggerReason Authorized)
    late_id_token: bool = False
    # a strict station: every call before its boot's answer (Accepted, Pending) gets SecurityError
    refuse_before_boot: bool = False
    # answers every TriggerMessage with this status ("Rejected", "NotImplemented") and sends
    # nothing (None: it sends what it is asked for)
    refuse_triggers: str | None = None
    # answers every GetCompositeSchedule Rejected (it cannot say what it applies)
    refuse_composite: bool = False
    # after a reconnect, sends what it queued while offline one message per this many seconds
    # (site time), its stamps as they were (1.6 marks nothing as queued); None: at once
    drip_queue_s: float | None = None
    # a network outage is no reboot: after a reconnect it sends no BootNotification (valid:
    # it was registered on the connection before), its transactions running on
    no_boot_on_reconnect: bool = False


@dataclass(frozen=True)
class ConnectorSpec:
    connector_id: int
    phases: int = 3
    max_current_a: float = 32.0
    min_current_a: float = 6.0


@dataclass(frozen=True)
class StationSpec:
    station_id: str
    connectors: tuple[ConnectorSpec, ...]
    password: str | None = None
    voltage_v: float = 230.0
    max_current_a: float | None = None
    max_power_w: float | None = None
    vendor: str = "smartcharge"
    model: str = "SimStation"
    quirks: Quirks = Quirks()
    heartbeat_interval_s: int = 300
    meter_interval_s: int = 60
    physics_step_s: float = 60.0           # longest simulated step between physics updates
    call_timeout_s: float = 10.0           # real seconds to wait for a central-system answer
    reconnect_min_s: float = 0.2           # real seconds: reconnecting is about the network
    reconnect_max_s: float = 10.0
    max_stack_level: int = 10
    max_periods: int = 24
    max_installed: int = 16
    resume_after_reset: bool = True        # a car still plugged in starts a new session
    ocpp_version: str = "1.6"              # "1.6" or "2.0.1": the one subprotocol it offers
    # its own clock runs this far ahead of the site's (negative: behind): real stations' clocks
    # disagree by seconds, and a profile's absolute times are read on the station's clock
    clock_offset_s: float = 0.0

    def __post_init__(self) -> None:
        if self.ocpp_version not in OCPP_VERSIONS:
            raise ValueError(f"ocpp_version must be one of {', '.join(OCPP_VERSIONS)}, "
                             f"got {self.ocpp_version!r}")

    @classmethod
    def from_model(cls, station: domain.Station, **overrides) -> StationSpec:
        connectors = tuple(
            ConnectorSpec(c.connector_id, c.phases, c.max_current_a, c.min_current_a)
            for c in station.connectors)
        return cls(station_id=station.station_id, connectors=connectors,
                   password=station.password, voltage_v=station.voltage_v,
                   max_current_a=station.max_current_a, max_power_w=station.max_power_w,
                   **overrides)


@dataclass
class Transaction:
    connector_id: int
    id_tag: str
    meter_start_wh: int
    started_at: datetime
    transaction_id: int | str | None = None  # 1.6: assigned by the central system;
                                             # 2.0.1: made by the station
    id_tag_status: str | None = None
    meter_stop_wh: int | None = None       # the register the stop reported

    def context(self) -> TxContext:
        return TxContext(self.transaction_id, self.started_at)


@dataclass
class ConnectorState:
    spec: ConnectorSpec
    status: str = "Available"
    operative: bool = True
    unavailable_after_transaction: bool = False
    ev: SimEV | None = None
    transaction: Transaction | None = None
    pending_remote_id_tag: str | None = None
    register_wh: float = 0.0               # Energy.Active.Import.Register, never decreases
    draw_w: float = 0.0                    # what the car draws right now
    limit_w: float | None = None           # composite limit in force, None = none
    finished_transactions: list[Transaction] = field(default_factory=list)
