"""Energy prices the site was sent (OpenADR price signals), per source, and their value per
plan slot for the optimizer's cost term (`optimizer.Problem.price_per_kwh`).

Pure and clock-free. Prices are not obligations: they are held in memory and come back with
the VTN's next answer after a restart (2.0b re-sends every open event at registration; 3 is
polled). Energy first still wins: the optimizer only moves energy between slots by price when
every car gets what it needs either way (optimizer/objective.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from smartcharge.clock import format_ocpp_time


@dataclass(frozen=True)
class Price:
    start: datetime
    end: datetime
    price_per_kwh: float
    source: str                        # e.g. "openadr:<program>/<event>"
    priority: int = 0                  # 0 is the highest: where sources overlap, it wins


class SitePrices:
    def __init__(self) -> None:
        self._by_source: dict[str, list[Price]] = {}
        self.version = 0

    def set_source(self, source: str, prices: list[Price]) -> None:
        """Replace what `source` said (an empty list removes it)."""
        if prices:
            self._by_source[source] = sorted(prices, key=lambda p: p.start)
        else:
            self._by_source.pop(source, None)
        self.version += 1

    def prices(self) -> list[Price]:
        return sorted((p for ps in self._by_source.values() for p in ps),
                      key=lambda p: (p.start, p.priority, p.source))

    def price_at(self, moment: datetime) -> Price | None:
        """The price in force at `moment`: of overlapping sources, the highest priority."""
        found = [p for p in self.prices() if p.start <= moment < p.end]
        return min(found, key=lambda p: (p.priority, p.source)) if found else None

    def per_slot(self, slot_starts, slot_ends) -> np.ndarray | None:
        """(T,) price per slot [currency/kWh], time-weighted over the slot; None when no price
        touches the horizon. Slots no price covers take the mean of the covered ones, so the
        optimizer neither favours nor avoids what it knows nothing about."""
        values = np.full(len(slot_starts), np.nan)
        prices = self.prices()
        if not prices:
            return None
        for t, (start, end) in enumerate(zip(slot_starts, slot_ends)):
            edges = sorted({start, end} | {m for p in prices for m in (p.start, p.end)
                                           if start < m < end})
            weighted, covered = 0.0, 0.0
            for a, b in zip(edges, edges[1:]):
                price = self.price_at(a)
                if price is not None:
                    seconds = (b - a).total_seconds()
                    weighted += price.price_per_kwh * seconds
                    covered += seconds
            if covered > 0:
                values[t] = weighted / covered
        if np.isnan(values).all():
            return None
        return np.where(np.isnan(values), np.nanmean(values), values)

    def as_json(self, now: datetime) -> list[dict]:
        """What the dashboard shows: every price that has not ended, with its source."""
        return [{"start": format_ocpp_time(p.start), "end": format_ocpp_time(p.end),
                 "price_per_kwh": p.price_per_kwh, "source": p.source}
                for p in self.prices() if p.end > now]
