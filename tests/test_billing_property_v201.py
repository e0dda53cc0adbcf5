"""Property (OCPP 2.0.1): whatever a station's TransactionEvents go through on their way to us —
retried verbatim or re-worded (kWh for Wh, another way to write the instant, another
triggerReason), replayed offline out of order, a Started, an Updated or the Ended lost, an Ended
without meter values, the idToken only in a later event, a reboot in between, transactions of
one EVSE interleaved — the billable rows of `/api/sessions.csv` add up to exactly the energy the
registers that reached us show: for each transaction, its highest register seen minus its
lowest (a final BootNotification closes what never ended), and no transaction twice.

Each example runs the real app on 127.0.0.1 with a fresh SQLite file and talks to it with the
`ocpp` library's `ocpp.v201.ChargePoint` over a real WebSocket.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.billing_export import draw_next, play_and_bill
from tests.conftest import make_site
from tests.v201_billing import tx_event
from tests.v201_fixtures import Station201

STEP = timedelta(minutes=10)
MAX_STEP_WH = 3_000          # 18 kW for 10 min: a 22 kW station can deliver it


@dataclass(frozen=True)
class Plan:
    """One transaction as the station lives it: one register reading per event."""

    evse: int
    steps_wh: tuple[int, ...]    # energy between consecutive events (Started .. Ended)
    lose_started: bool
    lose_updated: int | None     # index of an Updated that never arrives (a seqNo gap)
    lose_ended: bool
    ended_without_meter: bool
    late_id_token: bool          # the idToken comes in the first Updated, not the Started
    offline_replay: bool         # its events arrive in a shuffled order, marked offline


plans = st.builds(
    Plan, evse=st.sampled_from([1, 2]),
    steps_wh=st.lists(st.integers(0, MAX_STEP_WH), min_size=1, max_size=4).map(tuple),
    lose_started=st.booleans(), lose_updated=st.none() | st.integers(0, 3),
    lose_ended=st.booleans(), ended_without_meter=st.booleans(),
    late_id_token=st.booleans(), offline_replay=st.booleans())


@dataclass(frozen=True)
class Sent:
    """One event as it will be sent; `reworded()` is the same event written otherwise."""

    event_type: str
    ref: str
    seq_no: int
    at: datetime
    register_wh: int | None
    id_tag: str | None
    offline: bool
    evse: int

    def request(self, reworded: bool = False):
        return tx_event(self.event_type, self.ref, self.seq_no, self.at,
                        register_wh=self.register_wh, id_tag=self.id_tag,
                        offline=self.offline, kwh=reworded,
                        trigger="RemoteStop" if reworded and self.event_type == "Ended"
                        else None, evse=self.evse)


def write_script(session_plans: list[Plan], t0: datetime, data) -> tuple[list, int]:
    """Per EVSE, each transaction's events in the order they will arrive; and the energy the
    registers that arrive show."""
    register = {1: 4_500_000, 2: 1_200_000}
    clock = {1: t0, 2: t0}
    queues: dict[int, list[Sent]] = {1: [], 2: []}
    expected_wh = 0
    for index, plan in enumerate(session_plans):
        ref, tag, c = f"tx-{index}", f"TAG-{index}", plan.evse
        events = []
        count = len(plan.steps_wh) + 1
        for seq in range(count):
            if seq:
                register[c] += plan.steps_wh[seq - 1]
                clock[c] += STEP
            kind = "Started" if seq == 0 else "Ended" if seq == count - 1 else "Updated"
            id_tag = None if plan.late_id_token and kind == "Started" else tag
            events.append(Sent(kind, ref, seq, clock[c], register[c], id_tag,
                               plan.offline_replay, evse=c))
        clock[c] += STEP
        if plan.ended_without_meter:
            events[-1] = replace(events[-1], register_wh=None)
        kept = [e for e in events if not (
            (plan.lose_started and e.event_type == "Started")
            or (plan.lose_ended and e.event_type == "Ended")
            or (plan.lose_updated is not None and e.event_type == "Updated"
                and e.seq_no == plan.lose_updated + 1))]
        seen = [e.register_wh for e in kept if e.register_wh is not None]
        expected_wh += max(seen) - min(seen) if seen else 0
        if plan.offline_replay:
            kept = data.draw(st.permutations(kept), label=f"replay order {index}")
        queues[c].extend(kept)
    return [q for q in queues.values() if q], expected_wh


async def deliver(queues: list, data, db_path: str, tags: frozenset[str]):
    """Play the events against a fresh server, then reboot the station; the billable sum."""
    async def play(station: Station201) -> None:
        await _play([list(q) for q in queues], data, station)
        await station.boot(reason="PowerUp")      # closes what never ended

    return await play_and_bill(make_site(id_tags=tags), db_path, "ocpp2.0.1", Station201, play)


async def _play(queues: list[list[Sent]], data, station: Station201) -> None:
    pending = dict(enumerate(queues))   # queue index -> its messages, removed when empty
    retries: list[Sent] = []
    while pending or retries:
        sent, reworded = draw_next(data, pending, retries)
        if data.draw(st.integers(0, 15), label="reboot") == 0:
            await station.boot(reason="Watchdog")
        await station.send(sent.request(reworded))


@settings(max_examples=45, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(session_plans=st.lists(plans, min_size=1, max_size=4), data=st.data())
def test_billable_energy_is_exactly_what_the_registers_show(session_plans, data):
    # station times in the past (a replayed queue): our reboot closes come after them
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    queues, expected_wh = write_script(session_plans, t0, data)
    tags = frozenset(f"TAG-{i}" for i in range(len(session_plans)))
    with tempfile.TemporaryDirectory() as directory:
        billed_wh, rows = asyncio.run(deliver(queues, data, str(Path(directory) / "b.db"),
                                              tags))
    assert billed_wh == expected_wh, [
        (r["transaction_id"], r["state"], r["energy_wh"], r["billable"], r["flags"])
        for r in rows]
    assert len(rows) == len({r["transaction_id"] for r in rows})
