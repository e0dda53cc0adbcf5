"""A bill revised by late samples says what its energy is now, not what it was.

A 2.0.1 station that was offline replays its queue out of order: its Ended (no End register)
arrives before the Started and the Updated that carry its registers. At the Ended the energy
is unknown (`unverifiable`); once the registers arrive it is established and billed - and the
row still said `unverifiable` beside a billable energy, a contradiction for whoever filters
the export by flags (found by the session 21 audit)."""

from __future__ import annotations

from datetime import timedelta

from tests.v201_billing import sessions, tx_event
from tests.v201_fixtures import station201

MIN = timedelta(minutes=1)


def flags(session):
    return set(session.flags.split(",")) - {""}


async def test_an_energy_established_late_drops_the_flags_of_the_energy_it_replaced(harness, t0):
    station = await station201(harness)
    await station.send(tx_event("Ended", "tx-Q", 2, t0 + 60 * MIN, offline=True))
    [session] = await sessions(harness)
    assert session.energy_wh is None and "unverifiable" in flags(session)
    await station.send(tx_event("Started", "tx-Q", 0, t0, register_wh=20_000, offline=True))
    await station.send(tx_event("Updated", "tx-Q", 1, t0 + 30 * MIN, register_wh=24_000,
                                offline=True))
    [session] = await sessions(harness)
    assert session.energy_wh == 4_000
    assert "unverifiable" not in flags(session), flags(session)
    # what still holds stays: the station said it was offline, the Ended had no End register
    assert {"offline_events", "no_stop_register", "revised_by_late_samples"} <= flags(session)
