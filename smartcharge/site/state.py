"""The live picture of the site, fed from domain events: who is online, connector status,
open sessions and their needs, the latest measurement of each connector with its timestamp.

Missing is not zero: a connector with no recent measurement has `measured_w(...) is None`, and
the controller then assumes it draws its maximum.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smartcharge import events as ev
from smartcharge import units
from smartcharge.clock import later
from smartcharge.metering import (
    DEFAULT_LOCATION,
    LiveEnergy,
    location_rank,
    station_max_power_w,
)
from smartcharge.model import Site
from smartcharge.ocpp.clock_offset import shift_s, supersedes
from smartcharge.site.estimates import PastSession, SessionHistory
from smartcharge.site.topology import ConnectorRef
from smartcharge.site.watched import WatchedDict

log = logging.getLogger(__name__)
# A phase carries the car's current when it reads at least this much [A]; an idle phase reads ~0.
PHASE_ACTIVE_A = 1.0

# Recent samples kept per connector, so the site load can be read at one instant (reading.py).
SAMPLES_KEPT = 16

# Sessions a station's reboot closed, kept (each connector's latest) in case the station shows
# they went on (the ledger reopens them): they resume with their energy so far and their need,
# and are planned as fixed loads until then (plan_inputs.py) - a restart of ours closes every
# charging session of the site at once. The bound is for connectors a station reports that
# the site file does not list (any number).
REBOOT_CLOSED_KEPT = 100_000
REBOOT = "Reboot"   # SessionStopped.reason of a session a station's reboot closed (implicit)

# What changed, so the controller can tell which events need a re-plan.
SESSION_CHANGE = "session"
STATION_CHANGE = "station"
MEASUREMENT = "measurement"
STATUS = "status"


@dataclass
class Session:
    transaction_id: int
    ref: ConnectorRef
    id_tag: str
    started_at: datetime
    # the start register; None: not known (a 2.0.1 transaction whose Started was lost) - never
    # read as 0, the energy so far comes from the registers that did arrive (metering.LiveEnergy)
    meter_start_wh: float | None
    requested_wh: float               # total energy the driver wants in this session [Wh]
    departure: datetime
    energy_wh: float = 0.0            # delivered so far, by the ledger's rules [Wh]
    need_told: bool = False           # requested_wh came from the driver, not the site default
    # Phase use learned from per-phase Current.Import (None: not known yet). On a 3-phase
    # connector a car with a single-phase on-board charger loads one station phase only.
    phases_in_use: int | None = None
    station_phase: int | None = None  # 0..2: the station phase a single-phase car loads
    # who set the need: "default" (the site file's), "estimated" (from the site's history of
    # sessions: site/estimates.py), "operator" (a person, through the API: wins), "ev" (the
    # car, ISO 15118: site/station_reports.py)
    need_source: str = "default"
    # where meter_start_wh was measured (events.SessionStarted); None: not said
    meter_start_location: str | None = None
    # the most periods a schedule may have for its car (2.0.1 maxScheduleTuples, ISO 15118:
    # the station hands the car our TxProfile as its schedule); None: as many as the station
    # takes
    ev_max_periods: int | None = None
    # the register chain, by the billing rules (a start register of 0, resets, late samples)
    live: LiveEnergy | None = field(default=None, repr=False, compare=False)

    @property
    def remaining_wh(self) -> float:
        return max(self.requested_wh - self.energy_wh, 0.0)

    def as_json(self) -> dict:
        from smartcharge.clock import format_ocpp_time
        return {"session_id": self.transaction_id, "station_id": self.ref.station_id,
                "connector_id": self.ref.connector_id, "energy_wh": round(self.energy_wh, 1),
                "requested_wh": self.requested_wh, "departure": format_ocpp_time(self.departure),
                "need_source": self.need_source,
                "id_tag": self.id_tag, "start": format_ocpp_time(self.started_at)}


@dataclass(frozen=True)
class Measurement:
    power_w: float
    at: datetime                        # the station's timestamp
    received_at: datetime | None = None  # ours: what the age is measured by (None: `at`)
    # the station's clock minus ours as its own stamps showed when this came (0: not known)
    clock_offset_s: float = 0.0
    # a draw without a session on a 3-phase connector: (phases, station phase of a
    # single-phase draw) its per-phase currents showed (`phases_shown`); None: not shown
    phases_shown: tuple[int, int | None] | None = None

    @property
    def arrived(self) -> datetime:
        return self.received_at or self.at

    @property
    def measured_at(self) -> datetime:
        """The station's timestamp on our clock, as far as its offset is known."""
        if not self.clock_offset_s:
            return self.at
        return self.at - timedelta(seconds=self.clock_offset_s)

    @property
    def ordered_at(self) -> datetime:
        """When it was measured, for telling newer from older: its stamp on our clock, but never
        after we received it (a clock ahead must not make one sample outrank every later one).
        The offset matters for a late sample of a station ahead: put where it arrived, one
        taken before a decrease read as taken after it (a car accused of disobeying its new
        limit, tests/test_guard_clock_ahead.py)."""
        return min(self.measured_at, self.arrived)


def phases_shown(current_a) -> tuple[int, int | None] | None:
    """(phases, station phase of a single-phase draw) that a sample's per-phase currents on a
    3-phase connector show, or None. Only a sample with all three phases reported counts (a
    missing phase is unknown, never zero): one phase carrying current -> single-phase on that
    phase; all three -> 3-phase. Two phases, or no current at all, teach nothing."""
    if len(current_a) != 3 or any(c is None for c in current_a):
        return None
    active = [i for i, c in enumerate(current_a) if c >= PHASE_ACTIVE_A]
    if len(active) == 1:
        return 1, active[0]
    if len(active) == 3:
        return 3, None
    return None


class SiteState:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.online: dict[str, bool] = {s.station_id: False for s in site.stations}
        self.status: dict[ConnectorRef, str] = {}
        # the station's stamp of each status held: one stamped before it (a station's queue
        # delivered after its current status) is history, not the connector's state now
        # (with how it stood against our clock: `ocpp/clock_offset.py` `supersedes`)
        self.status_at: dict[ConnectorRef, tuple[datetime, str]] = {}
        # watched: the guard counts a connector again when its session or sample changes
        # (guard_counts.py); a change inside a Session that the guard reads (its phases) is
        # told with `sessions.touch(ref)`
        self.sessions: dict[ConnectorRef, Session] = WatchedDict()
        # transaction id -> its connector, kept by watching `sessions`: `session_by_id` is asked
        # per planned connector when sending (a scan of every session there was O(N^2) a round:
        # the server's CPU 24 -> 30-35 % at 5 000 stations, benchmarks/README.md session 34)
        self._ref_of_tx: dict[int, ConnectorRef] = {}
        self._tx_of_ref: dict[ConnectorRef, int] = {}
        self.sessions.watch(self._index_session)
        self.measurements: dict[ConnectorRef, Measurement] = WatchedDict()
        # the last SAMPLES_KEPT samples of each connector, oldest first (by ordered_at)
        self.recent: dict[ConnectorRef, list[Measurement]] = {}
        # transaction id -> a session a reboot closed (each connector's latest, oldest first)
        self.reboot_closed: dict[int, Session] = {}
        self._reboot_closed_on: dict[ConnectorRef, int] = {}   # connector -> its latest's id
        # transactions with ids up to this one were started before this process (the store's
        # highest at the start, site/restore.py): their stations may run profiles an earlier
        # process sent (site/installed.py `unknown_tx`)
        self.earlier_transactions_upto = 0
        # station -> its clock minus ours, as its own stamps show, when beyond the edge margin
        # (ocpp/clock_offset.py `shift_s`): its samples' stamps are read on our clock by it;
        # forgotten at a boot (which may set its clock) until told again
        self.clock_offset_s: dict[str, float] = {}
        # past sessions, for a silent driver's need and departure (loaded from the store at
        # start by site/restore.py, then taught by every session that stops)
        self.history = SessionHistory()
        # connectors stations reported that the site file does not list (site/undeclared.py):
        # counted and planned as their station's load
        self.undeclared: dict[ConnectorRef, None] = {}
        # the best location (metering.location_rank) each connector's draw came from: a draw
        # from a worse one is not the connector's (a station's inlet counts every connector)
        self.draw_location: dict[ConnectorRef, str] = {}

    # --- queries ----------------------------------------------------------------------------
    def session_by_id(self, transaction_id: int) -> Session | None:
        session = self.sessions.get(self._ref_of_tx.get(transaction_id))
        return session if session is not None and session.transaction_id == transaction_id \
            else None

    def _index_session(self, ref: ConnectorRef) -> None:
        """`sessions[ref]` changed (set, replaced, gone): the index follows."""
        old = self._tx_of_ref.pop(ref, None)
        if old is not None and self._ref_of_tx.get(old) == ref:
            del self._ref_of_tx[old]
        session = self.sessions.get(ref)
        if session is not None:
            self._tx_of_ref[ref] = session.transaction_id
            self._ref_of_tx[session.transaction_id] = ref

    def measured_w(self, ref: ConnectorRef, now: datetime, max_age_s: float) -> float | None:
        """The latest measured draw if we received it at most max_age_s ago, else None
        (unknown). Aged by our clock: a station's clock may be off by hours."""
        sample = self.measurements.get(ref)
        if sample is None or now - sample.arrived > timedelta(seconds=max_age_s):
            return None
        return sample.power_w

    def sample_at(self, ref: ConnectorRef, moment: datetime) -> Measurement | None:
        """The connector's last sample taken at or before `moment` (None: none kept)."""
        found = None
        for sample in self.recent.get(ref, ()):
            if sample.ordered_at > moment:
                break
            found = sample
        return found

    def sample_after(self, ref: ConnectorRef, moment: datetime) -> Measurement | None:
        """The connector's first sample taken after `moment` (None: none kept)."""
        for sample in self.recent.get(ref, ()):
            if sample.ordered_at > moment:
                return sample
        return None

    def last_measured_w(self, ref: ConnectorRef) -> float | None:
        sample = self.measurements.get(ref)
        return None if sample is None else sample.power_w

    # --- updates ----------------------------------------------------------------------------
    def set_need(self, transaction_id: int, *, requested_wh: float | None = None,
                 departure: datetime | None = None, source: str = "operator") -> Session:
        session = self.session_by_id(transaction_id)
        if session is None:
            raise KeyError(f"no open session {transaction_id}")
        session.need_source = source
        if requested_wh is not None:
            session.requested_wh = float(requested_wh)
            session.need_told = True
        if departure is not None:
            session.departure = departure
        return session

    def load_registers(self, transaction_id: int,
                       readings: Iterable[tuple],
                       location: str = DEFAULT_LOCATION) -> Session:
        """Feed an open session's stored register readings (station time, Wh[, the phases
        a sum adds], measured at `location`) through the billing rules, e.g. when the live
        site is rebuilt from the store after a restart."""
        session = self.session_by_id(transaction_id)
        if session is None:
            raise KeyError(f"no open session {transaction_id}")
        live = self._live(session)
        for at, register_wh, *phases in readings:
            live.add(at, register_wh, location, *phases)
        session.energy_wh = live.energy_wh or 0.0
        return session

    def apply(self, event) -> str | None:
        """Take one event in; return what kind of change it was (None: nothing for us)."""
        if isinstance(event, ev.ConnectorStatusChanged | ev.SessionStarted | ev.MeterSampled):
            self.note_undeclared(event.station_id, event.connector_id)
        if isinstance(event, ev.StationConnected | ev.StationBooted):
            if event.station_id not in self.online:
                return None
            was = self.online[event.station_id]
            self.online[event.station_id] = True
            if isinstance(event, ev.StationBooted):
                self.clock_offset_s.pop(event.station_id, None)
                # a reboot may have set its clock: its next status stands, whatever its stamp
                for ref in [r for r in self.status_at if r.station_id == event.station_id]:
                    del self.status_at[ref]
                for ref in [r for r in self.sessions if r.station_id == event.station_id]:
                    if self.sessions[ref].transaction_id in event.sessions_closed:
                        self._keep_reboot_closed(self.sessions.pop(ref))
                return STATION_CHANGE
            return None if was else STATION_CHANGE
        if isinstance(event, ev.StationClockMeasured):
            # the shift its schedules are sent with: none within the edge margin, where a
            # fraction of a second of estimate moved every sample against the limits' moments
            # (the closed loop judged samples against the limit before: a 5 000-station
            # server re-planned twice as often at 85 % of a core, s27-end)
            shift = shift_s(event.offset_s, self.site.server.edge_margin_s)
            if shift:
                self.clock_offset_s[event.station_id] = float(shift)
            else:
                self.clock_offset_s.pop(event.station_id, None)
            return None
        if isinstance(event, ev.StationDisconnected):
            if event.station_id not in self.online:
                return None
            self.online[event.station_id] = False
            return STATION_CHANGE
        if isinstance(event, ev.ConnectorStatusChanged):
            ref = ConnectorRef(event.station_id, event.connector_id)
            held = self.status_at.get(ref)
            if held is not None and not supersedes(event.at, event.clock, *held):
                # an older status from its queue (an `Available` from before the car came,
                # after `Charging`): read as the state now, it freed a boot-closed session's
                # connector - its room given away while the car charged on
                return None
            self.status[ref] = event.status
            self.status_at[ref] = (event.at, event.clock)
            return STATUS
        if isinstance(event, ev.SessionStarted):
            ref = ConnectorRef(event.station_id, event.connector_id)
            if self.site.station(event.station_id) is None:
                return None
            running = self.sessions.get(ref)
            if running is not None and running.transaction_id != event.transaction_id \
                    and running.started_at > event.at:
                # a late start of an OLDER transaction (a station's queue sent out of order
                # after an offline period): it ended before the running one began (the ledger
                # bills it as usual); the car still charging stays the connector's session
                return None
            resumed = self.reboot_closed.pop(event.transaction_id, None)
            if resumed is not None and resumed.ref == ref:
                # reopened after a reboot: the same session goes on (energy so far, its need;
                # without a start register, 0 would be all the site could count from)
                self.sessions[ref] = resumed
                return SESSION_CHANGE
            # a new transaction on the connector: the one a reboot closed there is over
            earlier = self._reboot_closed_on.pop(ref, None)
            if earlier is not None and earlier in self.reboot_closed \
                    and self.reboot_closed[earlier].ref == ref:
                del self.reboot_closed[earlier]
            defaults = self.site.session_defaults
            session = self.sessions[ref] = Session(
                transaction_id=event.transaction_id, ref=ref, id_tag=event.id_tag,
                started_at=event.at, meter_start_wh=event.meter_start_wh,
                meter_start_location=event.meter_start_location,
                requested_wh=defaults.energy_wh,
                departure=later(event.at, defaults.dwell_s))
            # until someone tells (a driver, an operator, the car), the history's estimate
            estimate = self.history.estimate(event.id_tag, ref, event.at)
            if estimate is not None:
                session.requested_wh = estimate.energy_wh
                session.departure = estimate.departure(event.at)
                session.need_source = "estimated"
            return SESSION_CHANGE
        if isinstance(event, ev.SessionStopped):
            self.reboot_closed.pop(event.transaction_id, None)
            for ref, session in list(self.sessions.items()):
                if session.transaction_id == event.transaction_id and \
                        ref.station_id == event.station_id:
                    del self.sessions[ref]
                    if event.implicit and event.reason == REBOOT:
                        self._keep_reboot_closed(session)
                        # the station may still run it (a fixed load in the plan): what its
                        # last sample showed it drawing stands, for the guard and the
                        # reading, until it goes stale (dropped, the car counted 0 W - idle -
                        # until its next sample reopened it)
                        return SESSION_CHANGE
                    if not event.implicit and event.energy_wh is not None:
                        # as store_history reads it back: stopped sessions with their energy
                        self.history.add(PastSession(session.id_tag, ref, session.started_at,
                                                     event.at, float(event.energy_wh)))
                    self.measurements.pop(ref, None)
                    self.recent.pop(ref, None)
                    return SESSION_CHANGE
            return None
        if isinstance(event, ev.MeterSampled):
            return self._meter(event)
        return None

    def _meter(self, event: ev.MeterSampled) -> str | None:
        ref = ConnectorRef(event.station_id, event.connector_id)
        session = self.sessions.get(ref)
        if session is not None and event.energy_register_wh is not None and (
                event.transaction_id == session.transaction_id
                or (event.transaction_id is None and event.at >= session.started_at)):
            # one without a transaction is the car's from its start on only, as a restart
            # reads them (StoreTx.live_register_points): one stamped before it is not the
            # session's, and after the start register it read as a meter reset
            # unknown (None) is not "nothing delivered" for billing, but for the plan the
            # car's need simply stands until the registers tell
            session.energy_wh = self._live(session).add(
                event.at, event.energy_register_wh, event.register_location,
                event.register_phases) or 0.0
        best = self.draw_location.get(ref)
        if best is not None and location_rank(event.draw_location) > location_rank(best):
            return None   # another meter's draw than the one this connector's is read at
        if event.power_w is not None or any(c is not None for c in event.current_a):
            self.draw_location[ref] = event.draw_location
        change = None
        if session is not None and self._learn_phases(session, event.current_a):
            change = SESSION_CHANGE
        # a draw without a session (sessionless.py) is counted on the phases its currents
        # show, as a session's car is once learned
        shown = phases_shown(event.current_a) if session is None \
            and self._three_phase(ref) else None
        power_w = event.power_w
        if power_w is None and any(c is not None for c in event.current_a):
            station = self.site.station(event.station_id)
            voltage = station.voltage_v if station else units.NOMINAL_VOLTAGE_V
            power_w = units.a_to_w(sum(c for c in event.current_a if c is not None), 1, voltage)
        if power_w is None:
            return change
        sample = Measurement(float(power_w), event.at, event.received_at,
                             self.clock_offset_s.get(event.station_id, 0.0), shown)
        previous = self.measurements.get(ref)
        # late samples (a station's queue) never replace fresh ones
        if previous is None or sample.ordered_at >= previous.ordered_at:
            self.measurements[ref] = sample
        recent = self.recent.setdefault(ref, [])
        recent.append(sample)
        recent.sort(key=lambda m: m.ordered_at)   # a late sample goes where it was taken
        del recent[:-SAMPLES_KEPT]
        return change or MEASUREMENT

    def note_undeclared(self, station_id: str, connector_id: int | None) -> None:
        """Remember (and warn, once) a connector of a known station its site entry does not
        list; connector 0 is the station's main meter. Also at start, from the connectors the
        store has a status of (site/restore.py): a station need not report it again."""
        if not connector_id or connector_id < 0:
            return
        station = self.site.station(station_id)
        if station is None or station.connector(connector_id) is not None:
            return
        ref = ConnectorRef(station_id, connector_id)
        if ref not in self.undeclared:
            self.undeclared[ref] = None
            log.warning("station %s reports connector %s, which is not in the site file: its "
                        "sessions are billed, its draw is counted under the station and the "
                        "station's maximum is kept free above it (declare it to have it "
                        "controlled)",
                        station_id, connector_id)

    def _keep_reboot_closed(self, session: Session) -> None:
        earlier = self._reboot_closed_on.get(session.ref)
        if earlier is not None and earlier != session.transaction_id:
            old = self.reboot_closed.get(earlier)
            if old is not None and old.ref == session.ref:
                del self.reboot_closed[earlier]   # a later car's: the earlier is not coming back
        self._reboot_closed_on[session.ref] = session.transaction_id
        self.reboot_closed[session.transaction_id] = session
        while len(self.reboot_closed) > REBOOT_CLOSED_KEPT:
            del self.reboot_closed[next(iter(self.reboot_closed))]

    def _live(self, session: Session) -> LiveEnergy:
        if session.live is None:
            session.live = LiveEnergy(session.meter_start_wh, session.started_at,
                                      station_max_power_w(self.site.station(
                                          session.ref.station_id)),
                                      session.meter_start_location)
        return session.live

    def _three_phase(self, ref: ConnectorRef) -> bool:
        station = self.site.station(ref.station_id)
        connector = station.connector(ref.connector_id) if station else None
        return connector is not None and connector.phases == 3

    def _learn_phases(self, session: Session, current_a) -> bool:
        """Learn which station phases a car on a 3-phase connector loads (`phases_shown`);
        True if it changed (the session stays as it was when the sample teaches nothing)."""
        if not self._three_phase(session.ref):
            return False
        learned = phases_shown(current_a)
        if learned is None:
            return False
        if (session.phases_in_use, session.station_phase) == learned:
            return False
        session.phases_in_use, session.station_phase = learned
        if self.sessions.get(session.ref) is session:
            self.sessions.touch(session.ref)   # what the guard counts it on changed
        return True
