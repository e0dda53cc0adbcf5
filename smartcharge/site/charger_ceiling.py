"""A three-phase car's on-board charger, guessed until its meter shows more.

A car that has taken every W it was offered has told nothing of its on-board charger's ceiling:
raised to its bay's maximum (22 kW on a 32 A bay) an 11 kW car took 11 kW, and the other
11 kW stood unused until its next meter sample showed the draw (up to a meter interval; the
quality days, truthful: 2.5-4.7 kWh a day of limit unused while the site was short,
benchmarks/README.md "s38-gap", most of it such raises). Three-phase on-board chargers take
16 A a phase (11 kW) or 32 A (22 kW), so until a sample shows the car drawing the 16 A step
(`guess_a`, plus the closed loop's headroom) it is planned at most there: an 11 kW car is never
offered the 22 kW it cannot take, and a 22 kW car offered the step takes all of it, which its
next sample (the phase probe's first, or a periodic one) shows - then it is planned at its
bay's maximum (`lifted`). What that costs: a 22 kW car waits for the sample at 11 kW where the
site had room for more.

Single-phase cars are not guessed: 3.7 and 7.4 kW chargers are both common, and a 16 A guess
would hold every 7.4 kW car (the simulator's) at half its rate for a meter interval. Nor a car
whose phases are not known yet (planned on a third of its W: `installed.planned_share`).
Pure: no clock, no I/O; the closed loop feeds it the samples.
"""

from __future__ import annotations

from smartcharge import units
from smartcharge.site.topology import ConnectorRef, SiteTopology


class ChargerCeiling:
    def __init__(self, topology: SiteTopology, guess_a: float | None, headroom_w: float):
        self.topology = topology
        self.guess_a = guess_a
        self.headroom_w = headroom_w
        # ref -> the transaction whose car was seen drawing the guess: planned without it
        self.lifted: dict[ConnectorRef, int] = {}

    def guess_w(self, ref: ConnectorRef, phases: int, phases_known: bool) -> float | None:
        """The guessed ceiling plus headroom [W], or None: no guess for this car (single-phase,
        phases unknown, the guess off, or the bay itself gives no more)."""
        if self.guess_a is None or not phases_known or phases != 3:
            return None
        station = self.topology.station(ref.station_id)
        guess_w = units.a_to_w(self.guess_a, 3, station.voltage_v) + self.headroom_w
        return guess_w if guess_w < self.topology.max_power_w(ref, 3) else None

    def cap_w(self, ref: ConnectorRef, transaction_id: int, phases: int,
              phases_known: bool) -> float | None:
        """What the car is planned at most at for its charger (None: no cap)."""
        if self.lifted.get(ref) == transaction_id:
            return None
        return self.guess_w(ref, phases, phases_known)

    def on_sample(self, ref: ConnectorRef, transaction_id: int, measured_w: float, phases: int,
                  phases_known: bool) -> bool:
        """A meter sample of the car; True when it lifts the guess (the car drew it: its
        charger takes more), so the car is planned again at its bay's maximum."""
        guess_w = self.cap_w(ref, transaction_id, phases, phases_known)
        if guess_w is None or measured_w < guess_w - self.headroom_w / 2:
            return False
        self.lifted[ref] = transaction_id
        return True
