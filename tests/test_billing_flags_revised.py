"""A bill revised by late samples says what its energy is now, not what it was.

A 2.0.1 station that was offline replays its queue out of order: its Ended (no End register)
arrives before the Started and the Updated that carry its registers. At the Ended the energy
is unknown (`unverifiable`); once the registers arrive it is established and billed - and the
row still said `unverifiable` beside a billable energy, a contradiction for whoever filters
the export by flags (found by the session 21 audit)."""

from __future__ import annotations

from datetime import timedelta

from ocpp.v16 import call

from tests.conftest import ocpp_time
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


async def test_an_implicit_close_revisited_by_late_samples_drops_its_unverifiable(harness, t0):
    """A 1.6 session closed by the connector's next session before any sample came (energy
    unknown, `unverifiable`); its queued sample arrives late and establishes 4 kWh: the row
    then says what the energy is now (`revisit_implicit_close`, the same rule as above)."""
    station = await harness.station("CP1")
    first = (await station.start_tx(1, 1000, t0)).transaction_id
    await station.start_tx(1, 9000, t0 + 60 * MIN)
    closed = next(s for s in await sessions(harness) if s.transaction_id == first)
    assert closed.state == "closed_implicitly" and closed.energy_wh is None
    assert "unverifiable" in flags(closed)
    await station.call(call.MeterValues(connector_id=1, transaction_id=first, meter_value=[
        {"timestamp": ocpp_time(t0 + 30 * MIN), "sampledValue": [{"value": "5000"}]}]),
        suppress=False)
    closed = next(s for s in await sessions(harness) if s.transaction_id == first)
    assert closed.energy_wh == 4000 and closed.energy_method == "samples"
    assert "unverifiable" not in flags(closed), flags(closed)
    # what still holds stays: no stop register, closed by the next session
    assert {"no_stop_register", "closed_by_newsession"} <= flags(closed)
