"""What the demo measures: the site's real draw against every limit, moment by moment.

The truth is the simulated cars' draws (what a meter on each breaker would read), not what the
controller believes. Each sample is checked against the effective grid limit (the most
restrictive of the site cap, the operator's cap schedule and the utility's events in force) and
against every breaker's power and per-phase current limit. A limit that was lowered with less
notice than one control-loop interval gets that interval of grace after it became known: no
controller can act on news it has not had time to receive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smartcharge.model import PHASE_NAMES, Site

POWER_TOLERANCE_W = 1.0       # rounding of meter values and profile limits
CURRENT_TOLERANCE_A = 0.05


@dataclass(frozen=True)
class TimedLimit:
    """A grid limit [W] in force over [start, end), known to the controller from `known_since`."""

    start: datetime
    end: datetime | None
    limit_w: float
    label: str
    known_since: datetime | None = None   # None: known from the start of the run

    def in_force(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


class GridLimits:
    """The effective grid limit at any moment: the minimum of every limit in force."""

    def __init__(self, site_cap_w: float | None, grace_s: float) -> None:
        self.site_cap_w = site_cap_w
        self.grace_s = grace_s
        self.limits: list[TimedLimit] = []

    def add(self, limit: TimedLimit) -> None:
        self.limits.append(limit)

    def effective_w(self, at: datetime) -> float | None:
        values = [lim.limit_w for lim in self.limits if lim.in_force(at)]
        if self.site_cap_w is not None:
            values.append(self.site_cap_w)
        return min(values, default=None)

    def checked_w(self, at: datetime) -> float | None:
        """The limit the measured load is held to at `at`: like `effective_w`, except that a
        limit with short notice only counts from `grace_s` after the later of its start and
        the moment it became known."""
        values = [] if self.site_cap_w is None else [self.site_cap_w]
        for lim in self.limits:
            if not lim.in_force(at):
                continue
            known = lim.known_since or lim.start
            binding_from = max(lim.start, known)
            if known > lim.start - timedelta(seconds=self.grace_s):
                binding_from = binding_from + timedelta(seconds=self.grace_s)
            if at >= binding_from:
                values.append(lim.limit_w)
        return min(values, default=None)


@dataclass(frozen=True)
class Draw:
    """One connector's measured draw: power [W] on `phases_in_use` phases starting at `phase`."""

    station_id: str
    connector_id: int
    power_w: float
    phases_in_use: int
    phase: str = "L1"


@dataclass(frozen=True)
class Violation:
    time: datetime
    where: str           # "grid" or a circuit id
    kind: str            # "power" or "current L1".."current L3"
    limit: float
    value: float

    @property
    def excess(self) -> float:
        return self.value - self.limit


@dataclass(frozen=True)
class Sample:
    time: datetime
    site_load_w: float
    effective_limit_w: float | None
    sessions: int
    delivered_wh: float


@dataclass
class Monitor:
    """Samples the site's draw and counts every moment a limit is exceeded."""

    site: Site
    limits: GridLimits
    samples: list[Sample] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        parents = {c.circuit_id: c.parent_id for c in self.site.circuits}
        self._chain: dict[str, list[str]] = {}
        for station in self.site.stations:
            chain, node = [], station.circuit_id
            while node is not None:
                chain.append(node)
                node = parents[node]
            self._chain[station.station_id] = chain
        self._voltage = {s.station_id: s.voltage_v for s in self.site.stations}
        self._root_id = self.site.root.circuit_id

    def chain(self, station_id: str) -> list[str]:
        """The circuits a station's load flows through, its own first, the grid last."""
        return self._chain[station_id]

    def record(self, at: datetime, draws: Iterable[Draw], sessions: int, delivered_wh: float) -> Sample:
        power_w: dict[str, float] = {c.circuit_id: 0.0 for c in self.site.circuits}
        current_a: dict[str, list[float]] = {c.circuit_id: [0.0, 0.0, 0.0] for c in self.site.circuits}
        for draw in draws:
            voltage_v = self._voltage[draw.station_id]
            per_phase_a = draw.power_w / (voltage_v * draw.phases_in_use)
            if draw.phases_in_use == 3:
                loaded = (0, 1, 2)
            else:
                loaded = (PHASE_NAMES.index(draw.phase),)
            for node in self._chain[draw.station_id]:
                power_w[node] += draw.power_w
                for phase in loaded:
                    current_a[node][phase] += per_phase_a
        self._check(at, power_w, current_a)
        sample = Sample(at, power_w[self._root_id], self.limits.effective_w(at), sessions, delivered_wh)
        self.samples.append(sample)
        return sample

    def _check(self, at: datetime, power_w: Mapping[str, float],
               current_a: Mapping[str, list[float]]) -> None:
        for circuit in self.site.circuits:
            cid = circuit.circuit_id
            limit_w = self.limits.checked_w(at) if cid == self._root_id else circuit.limit_w
            if limit_w is not None and power_w[cid] > limit_w + POWER_TOLERANCE_W:
                self.violations.append(Violation(at, cid, "power", limit_w, power_w[cid]))
            if circuit.limit_a is None:
                continue
            for phase, amps in enumerate(current_a[cid]):
                if amps > circuit.limit_a + CURRENT_TOLERANCE_A:
                    self.violations.append(
                        Violation(at, cid, f"current {PHASE_NAMES[phase]}", circuit.limit_a, amps))

    def peak(self) -> Sample | None:
        return max(self.samples, key=lambda s: s.site_load_w, default=None)


def kw(power_w: float | None) -> str:
    return "none" if power_w is None else f"{power_w / 1000:.1f} kW"
