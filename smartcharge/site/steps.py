"""Piecewise-constant limits over time, for comparing what a station has installed with what we
are about to send, interval by interval. Pure.

A step is a list of (from, value) sorted by time; each value holds from its moment until the
next one, the last one for ever. Before its first moment a step is not defined: the callers
start every step at or before "now".
"""

from __future__ import annotations

from datetime import datetime

Step = list[tuple[datetime, float]]


def value_at(step: Step, moment: datetime) -> float:
    value = step[0][1]
    for start, v in step:
        if start <= moment:
            value = v
        else:
            break
    return value


def overlay(top: Step, until: datetime, below: Step) -> Step:
    """`top` before `until`, `below` from then on (a profile that expires onto what is under
    it: the idle schedule, then the fail-safe default)."""
    out = [(m, v) for m, v in top if m < until]
    out.append((until, value_at(below, until)))
    out.extend((m, v) for m, v in below if m > until)
    return out


def moments(*steps: Step, since: datetime) -> list[datetime]:
    """`since` and every moment after it where one of the steps changes."""
    return sorted({since} | {m for step in steps for m, _ in step if m > since})


def compare(installed: Step, new: Step, since: datetime, tol: float = 1.0
            ) -> tuple[bool, bool]:
    """(lowers somewhere, raises somewhere): `new` against `installed`, in every interval from
    `since` on."""
    lowers = raises = False
    for moment in moments(installed, new, since=since):
        before, after = value_at(installed, moment), value_at(new, moment)
        lowers |= after < before - tol
        raises |= after > before + tol
    return lowers, raises


def raises_beyond(installed: Step, new: Step, since: datetime, band_w: float,
                  band_fraction: float, brief_s: float = 0.0) -> bool:
    """Whether `new` is above `installed` somewhere from `since` on by more than the dead band
    (`band_w`, or `band_fraction` of `new` there where that is less; always more than
    `compare`'s 1 W) for longer than `brief_s` at a stretch (a raise edge a few seconds later
    than the plan's, a fall a second earlier: edges.py)."""
    ordered = moments(installed, new, since=since)
    began: datetime | None = None
    for moment in ordered:
        before, after = value_at(installed, moment), value_at(new, moment)
        if after - before > max(1.0, min(band_w, band_fraction * after)):
            began = moment if began is None else began
        elif began is not None:
            if (moment - began).total_seconds() > brief_s:
                return True
            began = None
    return began is not None   # above for ever


def pointwise_min(a: Step, b: Step, since: datetime, until: datetime) -> Step:
    """min(a, b) in every interval of [since, until) - the part of a change that only lowers."""
    out: Step = []
    for moment in moments(a, b, since=since):
        if moment >= until:
            break
        value = min(value_at(a, moment), value_at(b, moment))
        if not out or out[-1][1] != value:
            out.append((moment, value))
    return out


def maximum(step: Step, since: datetime) -> float:
    return max(value_at(step, m) for m in moments(step, since=since))
