"""A station that just refused a connector's plan is not offered another at once.

An uncontrollable connector is offered a profile every `probe_every_s` (dispatch.py, `_probe`).
The refusal (or the silence) that made it uncontrollable was such an offer, but the first probe
went out right after it, in the background of the next round - and one per round started
before the first was answered: four SetChargingProfile attempts each on a station that refuses
everything (failed first: 4 on 1.6, 4 on 2.0.1 within 10 site seconds of the refusal; in a
loaded run three full offers to CP1 within 45 site seconds, s32-disobey). On a
station that does not answer, each probe holds its lock for its call timeouts (20 s with the
defaults), and the decreases of the rounds meanwhile - and every raise under its nodes that
waits for them - wait behind it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from smartcharge.appkeys import STORE
from tests.refusing_cp1 import CP1, refusing_cp1_charging
from tests.site_e2e import wait_until


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_refused_plan_counts_as_the_connectors_probe(tmp_path, version):
    # a re-plan and a round every half site minute
    async with refusing_cp1_charging(tmp_path, "refusal is a probe", 30_000.0, version=version,
                                     meter_interval_s=30) as (server, fleet, clock, dispatch):
        controller, dispatcher = server.controller, server.dispatcher
        await wait_until(lambda: CP1 in controller.uncontrollable, 20, "CP1's plan refused")
        refused = clock.now()
        rounds = dispatcher.rounds_done
        later = refused + timedelta(minutes=5)      # well within probe_every_s (15 min)
        await wait_until(lambda: clock.now() > later and dispatcher.rounds_done > rounds
                         and dispatcher.idle, 20, "five site minutes on, rounds run")
        await dispatcher.flush_audit()
        rows = await server.app[STORE].run(lambda tx: tx.profiles_sent("CP1"))
        # what CP1's connector was offered after the refusal (a probe tries the alternatives:
        # TxProfile and as its default, in A and in W)
        offered = [(row["purpose"], row["sent_at"]) for row in rows
                   if row["connector_id"] == 1
                   and refused < datetime.fromisoformat(row["sent_at"])
                   < refused + timedelta(seconds=dispatch.probe_every_s - 60)]
        assert offered == [], offered
