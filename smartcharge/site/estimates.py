"""A silent driver's need and departure, estimated from the sessions the site has seen.

Pure computation (no I/O): the past sessions come in as `PastSession`s - read from the store's
`sessions` table at start (`store_history.py`, off the event loop, by `site/restore.py`) and
added live as sessions stop (`site/state.py`). A session's estimate uses only sessions that
ended by the moment it started, so the same stored data gives the same estimate after a
restart as it gave live.

What is estimated: the energy the session will take and how long the car stays, each the
lower quartile (a robust quantile) of the past sessions of, in this order,

1. the same id tag (at least `min_tag` sessions): drivers have habits;
2. the same bay (connector), when the tag is new, silent (no tag) or has too few sessions;
3. the whole site;

and nothing (None: the site file's defaults) when even the site has too few. A need told by a
driver, an operator or the car (ISO 15118) always wins over an estimate (`SiteState.set_need`
replaces it); an estimated need is marked `need_source = "estimated"`.

Quantiles, not means: one session of a car left plugged in over a weekend must not make every
later visit of that driver look like a weekend. The lower quartile, because a guess should err
on the side that costs little: a departure estimated too late defers energy the car then
leaves without, one too early only serves it sooner; an energy estimated too high takes
capacity from needs people told, one too low costs little, since a silent driver's car keeps
charging past its estimate at top-up priority (`ControllerSettings.topup_weight`). Measured on
the quality benchmark (benchmarks/README.md): on the regulars' day (drivers with habits) the
estimates win back the gap to truthful drivers; on the days of random cars (no habits to
learn) they change little.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from smartcharge.clock import later

from smartcharge.site.topology import ConnectorRef

KEPT_PER_TAG = 50        # the newest sessions kept per id tag and per bay
KEPT_SITE = 2000         # ... and for the whole site
MIN_STAY_S = 60.0        # shorter sessions (a plug-in and out) say nothing about a stay


@dataclass(frozen=True)
class PastSession:
    id_tag: str | None
    ref: ConnectorRef
    started_at: datetime
    stopped_at: datetime
    energy_wh: float


@dataclass(frozen=True)
class Estimate:
    energy_wh: float
    stay_s: float
    basis: str            # "tag" | "bay" | "site": whose sessions it comes from
    sessions: int         # how many

    def departure(self, arrival: datetime) -> datetime:
        return later(arrival, self.stay_s)


@dataclass(frozen=True)
class EstimateSettings:
    energy_quantile: float = 0.25
    stay_quantile: float = 0.25
    min_tag: int = 3          # sessions of a tag before its own habits count
    min_bay: int = 5
    min_site: int = 10
    # sessions that began within this long of a new one's arrival on the clock come first
    # (SessionHistory.estimate); None: every session alike
    arrival_window_s: float | None = 2 * 3600.0


class SessionHistory:
    """Past sessions per id tag, per bay and for the site (the newest few of each)."""

    def __init__(self, settings: EstimateSettings | None = None) -> None:
        self.settings = settings or EstimateSettings()
        self.by_tag: dict[str, deque[PastSession]] = {}
        self.by_bay: dict[ConnectorRef, deque[PastSession]] = {}
        self.site: deque[PastSession] = deque(maxlen=KEPT_SITE)

    def add(self, past: PastSession) -> None:
        """One stopped session (energy known). Sessions are expected oldest first."""
        if (past.stopped_at - past.started_at).total_seconds() < MIN_STAY_S \
                or not np.isfinite(past.energy_wh) or past.energy_wh < 0:
            return
        if past.id_tag:
            self.by_tag.setdefault(past.id_tag, deque(maxlen=KEPT_PER_TAG)).append(past)
        self.by_bay.setdefault(past.ref, deque(maxlen=KEPT_PER_TAG)).append(past)
        self.site.append(past)

    def estimate(self, id_tag: str | None, ref: ConnectorRef, at: datetime) -> Estimate | None:
        """The estimate for a session starting at `at` (from sessions ended by then), or None
        when there is too little history: the site's defaults apply.

        First from the sessions that began near the same time of day (within
        `arrival_window_s`, on the clock), tier by tier; only where no tier has enough of
        those, from all of them. A stay depends on when a car comes: a depot's cars come in
        the evening and stay the night, the one that comes at 03:45 into a bay left free
        stays until the morning shift - 2 h, not the evening cars' 10 h. Estimated from all
        the bay's sessions, that car was planned as leaving at 13:45 and left at 06:06 with
        1.1 of its 16.8 kWh (the quality benchmark's depot day, benchmarks/README.md
        "s35-quality")."""
        s = self.settings
        tiers = (("tag", self.by_tag.get(id_tag, ()) if id_tag else (), s.min_tag),
                 ("bay", self.by_bay.get(ref, ()), s.min_bay),
                 ("site", self.site, s.min_site))
        known = [(basis, [p for p in sessions if p.stopped_at <= at], least)
                 for basis, sessions, least in tiers]
        if s.arrival_window_s is not None:
            for basis, sessions, least in known:
                near = [p for p in sessions
                        if _clock_distance_s(p.started_at, at) <= s.arrival_window_s]
                if len(near) >= least:
                    return _estimate(near, basis, s)
        for basis, sessions, least in known:
            if len(sessions) >= least:
                return _estimate(sessions, basis, s)
        return None


def _clock_distance_s(a: datetime, b: datetime) -> float:
    """How far apart two moments are on the clock face [s], whatever their dates (0-12 h)."""
    day_s = 86_400.0
    gap = abs((a.timestamp() - b.timestamp()) % day_s)
    return min(gap, day_s - gap)


def _estimate(sessions: list[PastSession], basis: str, s: EstimateSettings) -> Estimate:
    energy = np.array([p.energy_wh for p in sessions])
    stay = np.array([(p.stopped_at - p.started_at).total_seconds() for p in sessions])
    return Estimate(float(np.quantile(energy, s.energy_quantile)),
                    float(np.quantile(stay, s.stay_quantile)), basis, len(sessions))


__all__ = ["Estimate", "EstimateSettings", "PastSession", "SessionHistory"]
