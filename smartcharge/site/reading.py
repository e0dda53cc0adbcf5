"""The measured site load as a reading at one instant, from the connectors' own samples.

Meters sample at their own moments (each station every meter interval, out of step with the
others). Adding up each connector's last sample mixes instants: a car sampled before it was
turned down plus one sampled after it was turned up make a load that was never drawn. A reading
instead picks one instant - the newest at which every metered connector has a sample at or
before it (the oldest of their last samples; a session not metered yet, or first metered after
that instant, is known to draw nothing before it began, so its start bounds the instant) - and
takes each connector's last sample at or before that instant. A sample
taken before the connector's limit was lowered, the decrease between it and the instant, is
counted at most at what its profiles allowed around that instant (`cap_w`: the controller's,
which lets it stand when the connector's next sample once it had to follow shows it drawing
more - it does not obey). A charging connector whose meter is stale counts at its maximum
(missing is not zero, DESIGN) and is counted in `stale`.

The guard (guard.py) judges a different quantity on purpose: each connector's draw NOW, as
conservatively as it can, to act on overloads; it does not use this reading.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from smartcharge.site import in_steps
from smartcharge.site.state import Measurement, SiteState
from smartcharge.site.topology import ConnectorRef

FRESH, STALE, UNMEASURED, IDLE = "fresh", "stale", "unmeasured", "idle"
# connectors read per step: the reading is 4-12 us a connector (20-60 ms at 5 000 in one go), and
# 500 a step made single steps of ~8 ms, which with the share's 4 ms made 12 ms steps of the
# site's sampling task in the 5 000-station benchmark's window (s38-stall)
REFS_PER_STEP = 100


@dataclass(frozen=True)
class SiteReading:
    at: datetime                        # the instant the load was drawn at
    load_w: float                       # the site's draw at `at` [W]
    stale: int                          # connectors counted at their maximum (stale meters)
    draws: dict[ConnectorRef, tuple[float, str]] = field(default_factory=dict)


# `next_after` is strict: a sample taken at the very moment a car had to follow counts
_JUST_BEFORE = timedelta(microseconds=1)


def cap_before_decrease_w(sample: Measurement, at: datetime, followed_since: datetime | None,
                          settle_s: float, allowed_w: Callable[[], float | None],
                          next_after: Callable[[datetime], Measurement | None]
                          ) -> float | None:
    """What a connector's `sample`, taken before its limit was lowered, counts at in a reading
    at `at` (None: as it is): at most what its profiles allow around `at` (`allowed_w`), when
    the decrease came between the sample and `at` (`followed_since`: the decrease plus its
    `settle_s`, when a car must have followed). Unless its next sample once it had to follow
    (`next_after(moment)`: the first taken after it) shows it drawing more: it does not obey -
    a station that accepts and ignores every profile read ~26 kW on the dashboard while its
    cars drew 44 kW (tests/test_reading_disobedient.py); one inside the settle time may still
    show an obeying car's old draw (14.2 kW read under a 12 kW event, test_site_reading_e2e)."""
    if followed_since is None or sample.measured_at >= followed_since or sample.ordered_at >= at \
            or at < followed_since - timedelta(seconds=settle_s):
        # the car had followed the decrease by the sample; or the sample is of the very
        # instant (what it drew then, whatever it was allowed); or the decrease came later
        return None
    cap_w = allowed_w()
    after = next_after(max(at, followed_since - _JUST_BEFORE))
    if cap_w is not None and after is not None and after.power_w > cap_w:
        return None   # it kept drawing over the lowered limit: the sample stands
    return cap_w


def read_site(state: SiteState, refs, now: datetime, stale_after_s: float,
              stale_w: Callable[[ConnectorRef], float],
              cap_w: Callable[[ConnectorRef, Measurement, datetime], float | None] | None = None
              ) -> SiteReading:
    return in_steps.run_all(read_site_steps(state, refs, now, stale_after_s, stale_w, cap_w))


def read_site_steps(state: SiteState, refs, now: datetime, stale_after_s: float,
                    stale_w: Callable[[ConnectorRef], float],
                    cap_w: Callable[[ConnectorRef, Measurement, datetime], float | None]
                    | None = None) -> in_steps.Steps[SiteReading]:
    """The reading, yielding every REFS_PER_STEP connectors (in_steps.py): tens of ms at
    5 000 connectors in one go. Samples that arrive between steps are newer than the instant
    the first pass picked, so the reading stays one of that instant."""
    refs = list(refs)
    window = timedelta(seconds=stale_after_s)
    fresh: set[ConnectorRef] = set()
    moments = []
    for first, part in in_steps.chunks(refs, REFS_PER_STEP):
        if first:
            yield
        for ref in part:
            latest = state.measurements.get(ref)
            session = state.sessions.get(ref)
            if latest is not None and now - latest.arrived <= window:
                fresh.add(ref)
                if session is not None or latest.power_w > 0:
                    moments.append(min(latest.ordered_at, now))
            elif session is not None and latest is None and now - session.started_at <= window:
                moments.append(min(session.started_at, now))   # drew nothing before it began
    at = min(moments, default=now)
    # A session that began before the instant but was first sampled after it drew something
    # unknown then (its first sample shows it after others were turned down to make room):
    # read the site at its start instead, when it drew nothing.
    moved = True
    while moved:
        moved = False
        for first, part in in_steps.chunks(list(fresh), REFS_PER_STEP):
            yield
            for ref in part:
                session = state.sessions.get(ref)
                if session is not None and session.started_at < at \
                        and state.sample_at(ref, at) is None:
                    at, moved = session.started_at, True
    draws, stale = {}, 0
    for first, part in in_steps.chunks(refs, REFS_PER_STEP):
        yield
        for ref in part:
            session = state.sessions.get(ref)
            if ref in fresh:
                sample = state.sample_at(ref, at)
                # none at or before the instant: its session began at or after it (see above)
                watts = 0.0 if sample is None else sample.power_w
                if cap_w is not None and sample is not None and watts > 0:
                    cap = cap_w(ref, sample, at)
                    if cap is not None:
                        watts = min(watts, cap)
                draws[ref] = (watts, FRESH)
            elif session is None:
                draws[ref] = (0.0, IDLE)
            elif state.measurements.get(ref) is None and session.started_at >= at \
                    and now - session.started_at <= window:
                draws[ref] = (0.0, UNMEASURED)
            else:
                draws[ref] = (stale_w(ref), STALE)
                stale += 1
    return SiteReading(at, sum(w for w, _ in draws.values()), stale, draws)
