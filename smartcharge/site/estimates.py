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
        when there is too little history: the site's defaults apply."""
        s = self.settings
        tiers = (("tag", self.by_tag.get(id_tag, ()) if id_tag else (), s.min_tag),
                 ("bay", self.by_bay.get(ref, ()), s.min_bay),
                 ("site", self.site, s.min_site))
        for basis, sessions, least in tiers:
            known = [p for p in sessions if p.stopped_at <= at]
            if len(known) >= least:
                return _estimate(known, basis, s)
        return None


def _estimate(sessions: list[PastSession], basis: str, s: EstimateSettings) -> Estimate:
    energy = np.array([p.energy_wh for p in sessions])
    stay = np.array([(p.stopped_at - p.started_at).total_seconds() for p in sessions])
    return Estimate(float(np.quantile(energy, s.energy_quantile)),
                    float(np.quantile(stay, s.stay_quantile)), basis, len(sessions))


__all__ = ["Estimate", "EstimateSettings", "PastSession", "SessionHistory"]
