"""Pure metering rules: OCPP sampled values into SI readings, and a session's energy from registers.

No I/O. `session_energy` is the billing rule: stop register − start register in Wh when that is
plausible; otherwise the chain of register readings in time order, where a drop is a meter reset
or rollover (counted from zero) and a jump faster than the station can charge is dropped (e.g.
a start register of 0 sent by a station that started offline). Energy is never negative and
never bigger than the station could have delivered; when it cannot be established it is None.
The live energy of a running session (`LiveEnergy`, `energy_so_far_wh`) is the same chain, so the
controller plans with the energy the ledger will bill.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from smartcharge import units
from smartcharge.clock import parse_ocpp_time
from smartcharge.model import Station

ENERGY_REGISTER = "Energy.Active.Import.Register"
DEFAULT_MEASURAND = ENERGY_REGISTER          # OCPP 1.6 SampledValue defaults
DEFAULT_CONTEXT = "Sample.Periodic"
DEFAULT_LOCATION = "Outlet"
DEFAULT_FORMAT = "Raw"
DEFAULT_MAX_POWER_W = 350_000.0              # when a station's maximum is unknown (DC HPC)
# The checks are for gross errors (a start register of 0, a rollover, a garbage value), so
# they are generous: meters, station clocks and declared maxima in site files are not perfect.
PLAUSIBILITY_FACTOR = 2.0
PLAUSIBILITY_SLACK_WH = 500.0
UNKNOWN_DURATION_S = 24 * 3600.0             # ceiling when the station's clock is unusable
# A register a little below the one before it is that meter read coarser (a Begin in Wh, then
# samples in kWh with one decimal: 1234 Wh, then "1.2" kWh), never a reset: a reset or a
# rollover starts again near zero. Such a step counts nothing and the chain stays on the
# higher reading. "A little": less than a kWh at 0 decimals truncates, and above half of it.
COARSER_READING_MAX_DROP_WH = 1000.0

# the units that are a power of ten of ours (every other unit is ours already)
_TENS = {"kwh": 3, "kvarh": 3, "kw": 3, "kvar": 3}


@dataclass(frozen=True)
class Reading:
    """One OCPP SampledValue, with the defaults the spec implies filled in."""

    timestamp: datetime
    value_text: str
    measurand: str
    phase: str                 # '' when the value is not per phase
    unit: str                  # as sent, '' when absent
    context: str
    location: str
    format: str
    value_si: float | None     # Wh, W, A, V, %...; None for signed or non-numeric values


# Where a station may measure, in the order its values are read when the outlet's are missing:
# the outlet is the connector's own meter; a single-connector station's only meter often sits
# at its grid inlet (valid OCPP); then the cable's, the car's (DC chargers), the body's.
LOCATIONS_BY_PREFERENCE = (DEFAULT_LOCATION, "Inlet", "Cable", "EV", "Body")


def location_rank(location: str) -> tuple[int, str]:
    """Sort key of a location by `LOCATIONS_BY_PREFERENCE` (one not in OCPP last, by name)."""
    if location in LOCATIONS_BY_PREFERENCE:
        return LOCATIONS_BY_PREFERENCE.index(location), location
    return len(LOCATIONS_BY_PREFERENCE), location


def billed_location(locations: Iterable[str]) -> str | None:
    """The one location a set of values is read at: the outlet when there is one, else the
    first other by preference - never two, whose values read as one chain would make each step
    between them look like a meter reset (session 21 audit: 9.3 kWh billed for 4)."""
    return min(locations, key=location_rank, default=None)


def at_billed_location(readings: Iterable[Reading]) -> list[Reading]:
    """Those of `readings` measured at their `billed_location`."""
    readings = list(readings)
    where = billed_location({r.location for r in readings})
    return [r for r in readings if r.location == where]


# A per-phase import register's phase, as summed (L1-N is L1's line-to-neutral value); N and
# the line-to-line phases carry no phase's own energy and are not summed
_SUMMED_PHASES = {"L1": "L1", "L2": "L2", "L3": "L3", "L1-N": "L1", "L2-N": "L2", "L3-N": "L3"}
PHASE_SUM_FLAGS = ("phase_sum", "phases_incomplete")


def phase_total(values: Iterable[tuple[str, float]]) -> float | None:
    """A draw (W) from one set's (phase, value) pairs, '' the total: the last total, else the
    sum of its per-phase values (L1-N as L1; of two for one phase the larger, the safe side) -
    a meter may report power per phase only, and such a draw read as none was never measured
    (session 32's judge: a car over its profile and the grid unseen). A phase it does not
    report adds nothing, as its currents do (`sampled._phase_current`); None: neither."""
    total, phases = None, {}
    for phase, value in values:
        if not phase:
            total = value
        elif (summed := _SUMMED_PHASES.get(phase)) is not None:
            phases[summed] = max(value, phases.get(summed, value))
    if total is not None or not phases:
        return total
    return float(sum(phases.values()))


@dataclass(frozen=True)
class RegisterPoint:
    """One set's total import register [Wh]: a set is the values of one timestamp, context and
    location. `phases`: empty for a total the station sent; else the phases whose per-phase
    registers were summed (the set had no total)."""

    timestamp: datetime
    context: str
    location: str
    value_wh: float
    phases: frozenset[str] = frozenset()
    received: object = None      # for the store's rows: when the set's last value arrived


def register_points(values: Iterable[tuple]) -> tuple[list[RegisterPoint], bool]:
    """(timestamp, context, location, phase, Wh[, received]) of import register values ->
    one point per set, in the order the sets first appear: each total it has (a total wins),
    else the sum of its phases - each value already in Wh, whatever unit it was sent in.
    Returns the points and whether a set was left out because two values of one phase
    disagree (not guessed: reported as `phases_incomplete`)."""
    totals: dict[tuple, list[RegisterPoint]] = {}
    phases: dict[tuple, dict[str, float]] = {}
    received: dict[tuple, object] = {}
    conflict: set[tuple] = set()
    for timestamp, context, location, phase, wh, *arrived in values:
        if wh is None:
            continue
        key = (timestamp, context, location)
        got = arrived[0] if arrived else None
        if got is not None and (received.get(key) is None or got > received[key]):
            received[key] = got
        if not phase:
            totals.setdefault(key, []).append(RegisterPoint(timestamp, context, location, wh,
                                                            received=got))
            continue
        summed = _SUMMED_PHASES.get(phase)
        if summed is None:
            continue
        seen = phases.setdefault(key, {})
        if seen.get(summed, wh) != wh:
            conflict.add(key)
        seen[summed] = wh
    points: list[RegisterPoint] = []
    for key in dict.fromkeys([*totals, *phases]):
        if key in totals:
            points.extend(totals[key])
        elif key not in conflict:
            points.append(RegisterPoint(*key, value_wh=decimal_wh(*phases[key].values()),
                                        phases=frozenset(phases[key]),
                                        received=received.get(key)))
    return points, bool(conflict - set(totals))


def decimal_wh(*values_wh: float) -> float:
    """Registers added (or, negated, subtracted) as the meter wrote them - each float's
    shortest decimal - so a bill is the meters' digits: as binary floats 1000.3 - 0.1 Wh read
    1000.1999999999999 and 100.1 + 200.2 + 300.3 Wh 600.5999999999999 (float noise in the
    bill and the CSV, as kWh read before `to_si` scaled in decimal)."""
    return float(sum(Decimal(repr(float(wh))) for wh in values_wh))


def billed_points(points: Iterable[RegisterPoint], incomplete: bool = False
                  ) -> tuple[list[RegisterPoint], frozenset[str]]:
    """The points the bill and the live energy use, and what that says (`phase_sum`,
    `phases_incomplete`): those at one location (`billed_location`: the outlet's when there
    are any, totals or phases), and of the phase sums only those with every phase the session
    reports there - a set with a phase missing is not summed (its sum would read as a meter
    reset, or bill less), never completed by a guess."""
    points = list(points)
    where = billed_location({p.location for p in points})
    here = [p for p in points if p.location == where]
    reported = frozenset().union(*(p.phases for p in here))
    kept = [p for p in here if not p.phases or p.phases == reported]
    flags = set()
    if any(p.phases for p in kept):
        flags.add("phase_sum")
    if incomplete or len(kept) < len(here):
        flags.add("phases_incomplete")
    return kept, frozenset(flags)


def reading_values(readings: Iterable[Reading]) -> list[tuple]:
    """Readings -> the import register values `register_points` takes."""
    return [(r.timestamp, r.context, r.location, r.phase, r.value_si) for r in readings
            if r.measurand == ENERGY_REGISTER and r.value_si is not None]


def billed_registers(readings: Iterable[Reading]) -> list[RegisterPoint]:
    """The import registers of one message the bill and the live energy use: each set's total,
    else the sum of its phases, at one location (`billed_points`; a phase is missing from a
    set when another set of the message has it)."""
    points, incomplete = register_points(reading_values(readings))
    return billed_points(points, incomplete)[0]


def to_si(value_text: str, unit: str, value_format: str, exponent: int = 0) -> float | None:
    """The value in our unit system (kWh -> Wh, kW -> W; `exponent`: a power of ten it is in
    besides, 2.0.1's `multiplier`); None when it is not a plain number.

    Scaled in decimal, as the meter wrote it: 2048.229 kWh is 2048229 Wh, where a float's
    product is 2048228.9999999998 - a bill off the meter's delta, and a sample equal to the
    stop register read above it (`samples_disagree`)."""
    if value_format != DEFAULT_FORMAT:
        return None
    try:
        value = float(value_text)
    except ValueError:
        return None
    shift = exponent + (_TENS.get(unit.lower(), 0) if unit else 0)
    if shift and math.isfinite(value):
        try:
            value = float(Decimal(value_text).scaleb(shift))
        except ArithmeticError:     # past Decimal's exponents (a 32-bit multiplier): no reading
            return None
    # "1e308" kWh is no reading either: not finite once in Wh
    return value if math.isfinite(value) else None


def parse_meter_values(meter_values: Sequence[dict],
                       value_of: Callable[[dict], tuple[str, str, float | None]] | None = None
                       ) -> list[Reading]:
    """OCPP MeterValue objects (snake_case keys, as the `ocpp` library hands them) -> Readings.

    `value_of(sampled)` -> (value as sent, unit as sent, value in SI units): how a version
    writes a value (1.6: a string with `unit`, the default; 2.0.1: a number with
    `unitOfMeasure`, see `ocpp/v201/meter.py`). Timestamps have already been checked at the
    edge; this raises ValueError if one slipped by.
    """
    value_of = value_of or _v16_value
    readings = []
    for meter_value in meter_values:
        timestamp = parse_ocpp_time(meter_value["timestamp"])
        for sampled in meter_value.get("sampled_value", []):
            value_text, unit, value_si = value_of(sampled)
            readings.append(Reading(
                timestamp=timestamp,
                value_text=value_text,
                measurand=sampled.get("measurand", DEFAULT_MEASURAND),
                phase=sampled.get("phase", ""),
                unit=unit,
                context=sampled.get("context", DEFAULT_CONTEXT),
                location=sampled.get("location", DEFAULT_LOCATION),
                format=sampled.get("format", DEFAULT_FORMAT),
                value_si=value_si,
            ))
    return readings


def _v16_value(sampled: dict) -> tuple[str, str, float | None]:
    value_text, unit = str(sampled["value"]), sampled.get("unit", "")
    return value_text, unit, to_si(value_text, unit, sampled.get("format", DEFAULT_FORMAT))


@dataclass(frozen=True)
class Energy:
    energy_wh: float | None    # None: cannot be established from what the station sent
    method: str                # "registers" | "samples" | "none"
    flags: frozenset[str]


# Every flag `session_energy` may set: they describe one computation of a session's energy, so
# an energy computed again (late samples, a late stop) replaces them rather than adds to them
ENERGY_FLAGS = frozenset({
    "clock_jump", "samples_disagree", "register_delta_negative", "register_delta_implausible",
    "no_stop_register", "no_start_register", "meter_reset", "start_register_zero",
    "implausible_jump", "unverifiable", *PHASE_SUM_FLAGS})


def plausible_wh(duration_s: float | None, max_power_w: float) -> float:
    """The most a station of `max_power_w` can deliver in `duration_s` (with tolerance)."""
    if duration_s is None:
        duration_s = UNKNOWN_DURATION_S
    return max_power_w * max(duration_s, 0.0) / 3600.0 * PLAUSIBILITY_FACTOR \
        + PLAUSIBILITY_SLACK_WH


def session_energy(meter_start_wh: float | None, start_time: datetime | None,
                   meter_stop_wh: float | None, stop_time: datetime | None,
                   readings: Sequence[tuple[datetime, float]],
                   max_power_w: float = DEFAULT_MAX_POWER_W) -> Energy:
    """Billed energy of one session; `readings` are its total import register readings.
    A negative register is none (`no_register`)."""
    flags: set[str] = set()
    meter_start_wh, meter_stop_wh = no_register(meter_start_wh), no_register(meter_stop_wh)
    readings = [(t, wh) for t, wh in readings if no_register(wh) is not None]
    if meter_start_wh is not None and meter_stop_wh is not None \
            and not _start_register_zero(meter_start_wh, start_time, readings, max_power_w) \
            and not _reset_between_samples(meter_start_wh, start_time, meter_stop_wh,
                                           stop_time, readings):
        duration_s = _seconds(start_time, stop_time)
        if duration_s is not None and duration_s < 0:
            duration_s = None  # the station's clock jumped: judge by the gross ceiling only
            flags.add("clock_jump")
        delta_wh = decimal_wh(meter_stop_wh, -meter_start_wh)
        if 0 <= delta_wh <= plausible_wh(duration_s, max_power_w):
            if any(wh < meter_start_wh or wh > meter_stop_wh for _, wh in readings):
                flags.add("samples_disagree")
            return Energy(delta_wh, "registers", frozenset(flags))
        flags.add("register_delta_negative" if delta_wh < 0 else "register_delta_implausible")
    points = _chain(meter_start_wh, start_time, readings, meter_stop_wh, stop_time)
    if meter_stop_wh is None:
        flags.add("no_stop_register")
    if meter_start_wh is None and readings:
        # (a 2.0.1 Started without its Begin value) the bill begins at the first sample: what
        # the car took before it is not known - said, as a missing stop register is
        flags.add("no_start_register")
    total_wh, trusted_steps = 0.0, 0
    base = points[0] if points else None
    for t1, wh1 in points[1:]:
        t0, wh0 = base
        if meter_start_wh is None and t1 is not None and (t1, wh1) == (t0, wh0):
            # with no start register, one reading twice (a 2.0.1 Ended's End value is a
            # sample and the stop) proves nothing taken: an Ended alone was billed 0 Wh
            continue
        if coarser_reading(wh0, wh1):
            flags.add("samples_disagree")
            trusted_steps += 1           # known: nothing taken between the two
            continue
        counted_wh, flag = chain_step_wh(t0, wh0, t1, wh1, t0 == points[0][0], max_power_w)
        base = (t1, wh1)
        if flag:
            flags.add(flag)
        if counted_wh is not None:
            total_wh = decimal_wh(total_wh, counted_wh)
            trusted_steps += 1
    if trusted_steps == 0:
        flags.add("unverifiable")
        return Energy(None, "none", frozenset(flags))
    return Energy(total_wh, "samples", frozenset(flags))


def no_register(wh: float | None) -> float | None:
    """An import register below 0 is none: the schemas allow it (1.6 meterStop is any integer,
    a 2.0.1 value any number) and firmware sends -1 for "not known"; read as a reset it was
    counted from zero - a negative energy billed."""
    return None if wh is None or wh < 0 else wh


def coarser_reading(wh0: float, wh1: float) -> bool:
    """`wh1`, after `wh0` in a chain, is the same register read coarser, not a reset
    (`COARSER_READING_MAX_DROP_WH`)."""
    return wh1 < wh0 and wh0 - wh1 <= COARSER_READING_MAX_DROP_WH and wh1 > wh0 / 2


def chain_step_wh(t0: datetime | None, wh0: float, t1: datetime | None, wh1: float,
                  from_first: bool, max_power_w: float) -> tuple[float | None, str | None]:
    """What one step of a register chain bills [Wh] (None: not trusted) and what it shows.

    A drop is a meter reset or rollover: counted from zero. A rise faster than the station can
    charge is not billed: a start register of 0 from a station that started offline (when the
    step starts at the chain's first point), else an implausible jump."""
    step_wh = decimal_wh(wh1, -wh0)
    ceiling_wh = plausible_wh(_seconds(t0, t1), max_power_w)
    if step_wh < 0:
        return (wh1 if wh1 <= ceiling_wh else 0.0), "meter_reset"
    if step_wh > ceiling_wh:
        return None, "start_register_zero" if wh0 == 0 and from_first else "implausible_jump"
    return step_wh, None


def energy_so_far_wh(meter_start_wh: float | None, start_time: datetime | None,
                     readings: Sequence[tuple[datetime, float]],
                     max_power_w: float = DEFAULT_MAX_POWER_W) -> float | None:
    """The energy a running session has had so far [Wh] by the billing rule (its register
    chain, no stop register yet); None when the registers cannot establish it. For code that
    rebuilds live sessions from the store; `LiveEnergy` keeps the same up to date."""
    return session_energy(meter_start_wh, start_time, None, None, readings,
                          max_power_w).energy_wh


class LiveEnergy:
    """A running session's energy so far, sample by sample, by the same rule as
    `energy_so_far_wh` (and so as the ledger's bill when the stop register never comes): one
    chain per location the registers come from, the energy the billed location's
    (`billed_location`: the outlet's once there is one) - a station may send its inlet's
    register in other messages than its outlet's, never to be read as one chain."""

    def __init__(self, meter_start_wh: float | None, start_time: datetime,
                 max_power_w: float = DEFAULT_MAX_POWER_W,
                 start_location: str | None = None) -> None:
        self._start = (meter_start_wh, start_time, max_power_w)
        # the start register begins its own location's chain only (None: not said, 1.6's
        # meterStart - every chain's); an inlet's start read in the outlet's chain made its
        # first outlet value a reset
        self._start_location = start_location
        self._chains: dict[str, _LiveChain] = {}
        if no_register(meter_start_wh) is None:
            self._start = (None, start_time, max_power_w)

    @property
    def energy_wh(self) -> float | None:
        where = billed_location(self._chains)
        return None if where is None else self._chains[where].energy_wh

    def add(self, at: datetime, register_wh: float, location: str = DEFAULT_LOCATION,
            phases: frozenset[str] = frozenset()) -> float | None:
        """One set's register (`phases`: those it sums, empty for a total as sent)."""
        if no_register(register_wh) is None:
            return self.energy_wh
        chain = self._chains.get(location)
        if chain is None:
            meter_start_wh, start_time, max_power_w = self._start
            if self._start_location not in (None, location):
                meter_start_wh = None
            chain = self._chains[location] = _LiveChain(meter_start_wh, start_time, max_power_w)
        chain.add(at, register_wh, phases)
        return self.energy_wh


class _LiveChain:
    """One location's register chain of a running session.

    A sample in time order costs one chain step; a late one re-walks the chain. Phase sums
    follow `billed_points`: only those with every phase the chain has reported count, so a
    sum that shows a phase not seen before re-walks the chain without the sums that lack it."""

    def __init__(self, meter_start_wh: float | None, start_time: datetime,
                 max_power_w: float = DEFAULT_MAX_POWER_W) -> None:
        self._start = [] if meter_start_wh is None else [(start_time, float(meter_start_wh))]
        self._readings: list[tuple[datetime, float]] = []
        self._max_power_w = max_power_w
        self._total_wh, self._trusted = 0.0, 0
        self._base: tuple[datetime, float] | None = None   # the point the chain stands on
        self._reported: frozenset[str] = frozenset()
        self._sums: list[tuple[datetime, float, frozenset[str]]] = []   # each phase sum

    @property
    def energy_wh(self) -> float | None:
        return self._total_wh if self._trusted else None

    def add(self, at: datetime, register_wh: float,
            phases: frozenset[str] = frozenset()) -> float | None:
        reading = (at, float(register_wh))
        if phases:
            self._sums.append((*reading, phases))
        if phases and not phases <= self._reported:
            # the sums counted so far lack the new phase: the chain again without them
            counted = Counter((t, wh) for t, wh, summed in self._sums
                              if summed == self._reported)
            totals = Counter(self._readings) - counted
            self._reported |= phases
            self._readings = sorted([*totals.elements(), *(
                (t, wh) for t, wh, summed in self._sums if summed == self._reported)])
            self._walk()
        elif phases and phases != self._reported:
            pass   # a phase missing from this set: not summed, as the bill does not
        elif self._readings and reading < self._readings[-1]:
            bisect.insort(self._readings, reading)
            self._walk()
        else:
            self._readings.append(reading)
            points = self._start + self._readings
            if len(points) > 1:
                self._step(points, len(points) - 1)
        return self.energy_wh

    def _walk(self) -> None:
        self._total_wh, self._trusted = 0.0, 0
        self._base = None
        points = self._start + self._readings
        for i in range(1, len(points)):
            self._step(points, i)

    def _step(self, points: list[tuple[datetime, float]], i: int) -> None:
        """Point `i` after the point the chain stands on (`_base`: the last one that was not a
        coarser reading, `coarser_reading`; the first point when None), as the bill counts."""
        t0, wh0 = self._base or points[0]
        t1, wh1 = points[i]
        if coarser_reading(wh0, wh1):
            self._trusted += 1
            return
        self._base = points[i]
        counted_wh, _ = chain_step_wh(t0, wh0, t1, wh1, t0 == points[0][0],
                                      self._max_power_w)
        if counted_wh is not None:
            self._total_wh = decimal_wh(self._total_wh, counted_wh)
            self._trusted += 1


def station_max_power_w(station: Station | None) -> float:
    """The most this station can draw [W], for the plausibility checks (units.station_max_w:
    the same maximum the fail-safe profiles are sized with)."""
    if station is None:
        return DEFAULT_MAX_POWER_W
    return units.station_max_w(station)


def _start_register_zero(meter_start_wh: float, start_time: datetime | None,
                         readings: Sequence[tuple[datetime, float]], max_power_w: float) -> bool:
    """A start register of 0 that the session's own first register sample belies (a station
    that started offline and did not know its meter): stop − start would bill the whole
    register, or nothing after a reset, so the chain of samples decides."""
    if meter_start_wh != 0 or not readings:
        return False
    first_time, first_wh = min(readings)
    return first_wh > plausible_wh(_seconds(start_time, first_time), max_power_w)


def _reset_between_samples(meter_start_wh: float, start_time: datetime | None,
                           meter_stop_wh: float, stop_time: datetime | None,
                           readings: Sequence[tuple[datetime, float]]) -> bool:
    """The samples show the meter restarting inside the session, so stop - start is no
    difference of one register's readings (a small register that restarted: 5 000, 8 000,
    then 1 000 and a stop of 6 000 is 9 kWh, not 1) and the chain bills. A restart, not a bad
    reading: a drop between two samples (not a coarser reading) to below the start register
    (less than the meter showed when the session began), the samples before it at or above the
    start register, those from it on at or below the stop register, and the stop register
    below the highest sample before the drop, not merely a coarser reading of it (the meter
    never came back). A glitch - one sample of 0 or too high in a rising series - comes back,
    and a session counter sent as the register (its first sample below the start) has no
    drop between samples: the registers bill both, as before. Only samples strictly inside the
    session count (the registers themselves come as samples too, a 2.0.1 Begin and End value,
    and a late one may be stamped anywhere)."""
    points = [wh for t, wh in sorted(readings)
              if (start_time is None or t > start_time) and (stop_time is None or t < stop_time)]
    for i in range(1, len(points)):
        before, after = points[i - 1], points[i]
        if after < before and not coarser_reading(before, after):
            highest_wh = max(points[:i])
            return (after < meter_start_wh
                    and all(wh >= meter_start_wh for wh in points[:i])
                    and all(wh <= meter_stop_wh for wh in points[i:])
                    and meter_stop_wh < highest_wh
                    and not coarser_reading(highest_wh, meter_stop_wh))
    return False


def _chain(meter_start_wh, start_time, readings, meter_stop_wh, stop_time):
    points: list[tuple[datetime | None, float]] = []
    if meter_start_wh is not None:
        points.append((start_time, meter_start_wh))
    # in time order; two readings of one instant lowest first, so the order they arrived in
    # (the live total, the store's row order) never turns them into a reset
    points.extend(sorted(readings))
    if meter_stop_wh is not None:
        points.append((stop_time, meter_stop_wh))
    return points


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()
