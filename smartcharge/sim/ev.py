"""A simple physical EV: a battery that takes what it is offered, up to what it can accept.

Acceptance is the on-board charger's maximum for the number of phases it is charging on, derated
linearly above `taper_start_soc` down to `taper_floor_ratio` of the maximum at 100 % (the
constant-voltage phase of a real battery). The car stops drawing at `target_soc`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class SimEV:
    capacity_wh: float
    soc: float                                   # state of charge, 0..1
    target_soc: float = 1.0                      # the driver's wish; the car stops here
    max_power_w_by_phases: dict[int, float] = field(
        default_factory=lambda: {1: 7_400.0, 3: 11_000.0}
    )
    taper_start_soc: float = 0.8
    taper_floor_ratio: float = 0.1               # acceptance at 100 % as a share of the maximum
    departure: datetime | None = None            # when the driver leaves, UTC
    onboard_phases: int = 3                      # phases the on-board charger can use (1 or 3)
    phases: int = 3                              # phases it is charging on (the station sets it)
    name: str = "ev"
    charged_wh: float = 0.0                      # energy taken since it was created
    # speaks ISO 15118: on an OCPP 2.0.1 station it tells its needs (NotifyEVChargingNeeds)
    iso15118: bool = False
    min_current_a: float = 6.0                   # what it tells as evMinCurrent (ISO 15118)

    def __post_init__(self) -> None:
        if self.capacity_wh <= 0:
            raise ValueError(f"capacity_wh must be positive, got {self.capacity_wh}")
        if not 0.0 <= self.soc <= 1.0:
            raise ValueError(f"soc must be within 0..1, got {self.soc}")
        if not 0.0 <= self.target_soc <= 1.0:
            raise ValueError(f"target_soc must be within 0..1, got {self.target_soc}")
        if not 0.0 < self.taper_start_soc <= 1.0:
            raise ValueError(f"taper_start_soc must be within (0, 1], got {self.taper_start_soc}")

    @property
    def energy_need_wh(self) -> float:
        return max(self.target_soc - self.soc, 0.0) * self.capacity_wh

    @property
    def full(self) -> bool:
        return self.soc >= self.target_soc - 1e-12

    def max_power_w(self) -> float:
        """The on-board charger's maximum on the phases it is charging on."""
        table = self.max_power_w_by_phases
        if self.phases in table:
            return table[self.phases]
        return min(table.values())

    def acceptance_w(self) -> float:
        """What the battery would take right now if offered without limit."""
        if self.full:
            return 0.0
        peak_w = self.max_power_w()
        if self.soc <= self.taper_start_soc or self.taper_start_soc >= 1.0:
            return peak_w
        progress = (self.soc - self.taper_start_soc) / (1.0 - self.taper_start_soc)
        return peak_w * (1.0 - progress * (1.0 - self.taper_floor_ratio))

    def advance(self, dt_s: float, offered_w: float) -> float:
        """Charge for `dt_s` seconds at up to `offered_w`; return the average power drawn [W].

        The draw is the smaller of the offer and the acceptance at the start of the step, and
        stops early (lowering the average) if the target is reached within the step.
        """
        if dt_s < 0:
            raise ValueError(f"dt_s must not be negative, got {dt_s}")
        if dt_s == 0:
            return 0.0
        power_w = max(min(offered_w, self.acceptance_w()), 0.0)
        energy_wh = min(power_w * dt_s / 3600.0, self.energy_need_wh)
        self.soc = min(self.soc + energy_wh / self.capacity_wh, 1.0)
        if self.energy_need_wh < 1e-9:
            self.soc = max(self.soc, self.target_soc)
        self.charged_wh += energy_wh
        return energy_wh * 3600.0 / dt_s


def random_ev(rng: random.Random, arrival: datetime, *, name: str = "ev") -> SimEV:
    """A plausible car from a seeded generator: the demo and tests get the same cars every run."""
    capacity_wh = rng.choice([40_000.0, 58_000.0, 64_000.0, 77_000.0, 82_000.0])
    soc = rng.uniform(0.1, 0.6)
    single_phase = rng.random() < 0.2
    dwell_s = rng.uniform(2 * 3600, 9 * 3600)
    return SimEV(
        capacity_wh=capacity_wh,
        soc=soc,
        target_soc=rng.choice([0.8, 0.9, 1.0]),
        max_power_w_by_phases={1: 7_400.0, 3: rng.choice([11_000.0, 22_000.0])},
        onboard_phases=1 if single_phase else 3,
        departure=arrival + timedelta(seconds=dwell_s),
        name=name,
    )
