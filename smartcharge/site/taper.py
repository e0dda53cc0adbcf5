"""A car's taper, learned from its meter: how much it will still take, slot by slot.

A battery above its taper start takes less the fuller it gets. A controller does not see the
state of charge (most AC stations do not report it), but it sees, at each meter sample, the
energy delivered so far and the power drawn, and it knows what it offered. A sample where the
car drew clearly less than it was offered shows the car's acceptance at that energy; two such
samples give the line the acceptance falls along (`per_wh`: watts less per Wh taken - for the
usual constant-voltage phase a straight line in the state of charge, as `sim.ev.SimEV` has it).

Charging at its acceptance from the last sample on, the car's acceptance falls exponentially in
time (da/dt = -per_wh * a), so the most it can take in each slot ahead is known, and the
planner caps the car there (`caps_w`): the power a tapering car will not take within the next
meter interval goes to the others at once (before, the car held its draw at the last sample plus
headroom until the next sample showed the drop), and the plan no longer leaves a tapering car's
energy to late slots where it can no longer take it.

A sample where the car takes more than the line says refutes it (a car that limited itself for
a while, a line fitted on noise): the fit is dropped and the closed loop's draw-plus-headroom
cap takes over again. Pure: no clock, no I/O; the closed loop (`closed_loop.py`) feeds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

# A fitted slope outside this range is noise or not taper [W less per Wh taken]: the simulator's
# cars taper at 0.4-2.5 (a 7.4 kW charger on 82 kWh to 22 kW on 40 kWh).
MIN_PER_WH = 0.02
MAX_PER_WH = 20.0
MIN_SPAN_WH = 50.0     # two samples closer in energy than this say nothing about the slope
MIN_DROP_W = 30.0      # ... nor two whose draws differ by less


@dataclass(frozen=True, slots=True)
class Point:
    at: datetime
    energy_wh: float     # delivered so far, by the session's register
    power_w: float       # what the car drew while offered more: its acceptance then


@dataclass(frozen=True, slots=True)
class Fit:
    anchor: Point        # the latest sample on the line
    per_wh: float        # acceptance falls by this many W per Wh taken

    def acceptance_w(self, energy_wh: float) -> float:
        return max(self.anchor.power_w - self.per_wh * (energy_wh - self.anchor.energy_wh), 0.0)

    def along_w(self, start: datetime, energy_wh: float, at: datetime) -> float:
        """Acceptance at `at` if the car, at `energy_wh` at `start`, takes all it accepts."""
        hours = max((at - start).total_seconds(), 0.0) / 3600.0
        return self.acceptance_w(energy_wh) * math.exp(-self.per_wh * hours)

    def mean_w(self, start: datetime, energy_wh: float, begin: datetime, end: datetime) -> float:
        """The most it can take on average over [begin, end] on the same trajectory."""
        span_h = (end - begin).total_seconds() / 3600.0
        if span_h <= 0.0:
            return self.along_w(start, energy_wh, begin)
        a_begin = self.along_w(start, energy_wh, begin)
        return a_begin * (1.0 - math.exp(-self.per_wh * span_h)) / (self.per_wh * span_h)


class TaperModel:
    """Per connector: the last sample that showed the car's acceptance, and the fitted line."""

    def __init__(self) -> None:
        self.last: dict = {}     # ref -> Point: the latest sample that showed acceptance
        self.fits: dict = {}     # ref -> Fit
        self.took: dict = {}     # ref -> Point: the last sample, if it took its whole offer

    def forget(self, ref) -> None:
        self.last.pop(ref, None)
        self.fits.pop(ref, None)
        self.took.pop(ref, None)

    def observe(self, ref, point: Point, offered_w: float, margin_w: float) -> str | None:
        """One meter sample of a car offered `offered_w`. Returns "fitted" when the line is
        new or moved, "refuted" when the car took more than the line allows (the fit is
        dropped), else None."""
        fit = self.fits.get(ref)
        if fit is not None and point.power_w > fit.acceptance_w(point.energy_wh) + margin_w:
            self.forget(ref)
            if offered_w - point.power_w > margin_w:
                self.last[ref] = point
            return "refuted"
        took_all, self.took[ref] = self.took.get(ref), None
        if offered_w - point.power_w <= margin_w:
            self.took[ref] = point   # took what it was offered: acceptance at least that
            return None
        before, self.last[ref] = self.last.get(ref), point
        # the slope from the last sample under the offer, and a lower bound from the sample
        # just before if it took its whole offer (the car accepted at least that then): the
        # steeper is the nearer (both fall short of it only if the taper began in between)
        slopes = [slope for slope in (_slope(before, point), _slope(took_all, point))
                  if slope is not None]
        if not slopes:
            if fit is not None and before is not None and point.energy_wh >= before.energy_wh:
                self.fits[ref] = Fit(point, fit.per_wh)   # on the line still: move the anchor
                return "fitted"
            return None
        per_wh = max(slopes)
        if not MIN_PER_WH <= per_wh <= MAX_PER_WH:
            self.fits.pop(ref, None)
            return None
        self.fits[ref] = Fit(point, per_wh)
        return "fitted"

    def caps_w(self, ref, sampled_at: datetime, energy_wh: float, starts, ends,
               next_sample: datetime | None, headroom_w: float) -> list[float] | None:
        """Per slot the most the car can take (plus headroom), or None without a fit.
        `energy_wh` is its energy at its last sample, `sampled_at`. Until the next sample
        (when the plan is made again) a slot's cap is the acceptance at the slot's end or
        at that sample, whichever comes first, so the car takes every watt it is offered;
        later slots get the mean along the trajectory (what it could take there)."""
        fit = self.fits.get(ref)
        if fit is None:
            return None
        caps = []
        for begin, end in zip(starts, ends):
            if next_sample is not None and begin < next_sample:
                at = min(end, next_sample)
                caps.append(fit.along_w(sampled_at, energy_wh, at) + headroom_w)
            else:
                caps.append(fit.mean_w(sampled_at, energy_wh, begin, end) + headroom_w)
        return caps


def _slope(earlier: Point | None, later: Point) -> float | None:
    """W less per Wh taken from `earlier` to `later`, or None if they say nothing."""
    if earlier is None:
        return None
    span_wh = later.energy_wh - earlier.energy_wh
    drop_w = earlier.power_w - later.power_w
    if span_wh < MIN_SPAN_WH or drop_w < MIN_DROP_W:
        return None
    return drop_w / span_wh
