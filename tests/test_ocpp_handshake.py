"""Who may connect: Basic auth, unknown identities, subprotocol negotiation, replacement."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from smartcharge.events import StationConnected, StationDisconnected
from smartcharge.appkeys import REGISTRY
from smartcharge.model import Connector, Station
from tests.conftest import PASSWORD, make_site


async def test_good_credentials_boot_accepted_and_registered(harness):
    station = await harness.station("CP1")
    assert harness.app[REGISTRY].online_ids() == {"CP1"}
    link = harness.app[REGISTRY].get("CP1")
    assert link.boot_accepted
    assert station.ws.protocol == "ocpp1.6"
    booted = await harness.store.run(lambda tx: tx.boot_status("CP1"))
    assert booted == "Accepted"


async def test_wrong_password_gets_401_before_upgrade(harness):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await harness.open_ws("CP1", password="not-the-password-x")
    assert refused.value.status == 401


async def test_missing_credentials_get_401(harness):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await harness.open_ws("CP1", password=None)
    assert refused.value.status == 401


async def test_credentials_of_another_identity_get_401(harness):
    # CP2's own password, presented for CP1's URL: the identity must match the credential
    import base64
    token = base64.b64encode(b"CP2:station-password-01").decode()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await harness.http.ws_connect(harness.url("/ocpp/CP1"), protocols=("ocpp1.6",),
                                      headers={"Authorization": f"Basic {token}"})
    assert refused.value.status == 401


NO_PASSWORDS = make_site(stations=(Station("CP1", "grid", (Connector(1),)),))


@pytest.mark.parametrize("site", [NO_PASSWORDS])
async def test_unknown_station_gets_404_where_no_station_has_a_password(harness):
    # OCPP-J (1.6 and 2.0.1, section 3.2): an identity it does not recognize SHOULD get 404;
    # with no password anywhere a known identity connects as it is: nothing to hide
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await harness.open_ws("NOT-DECLARED", password=None)
    assert refused.value.status == 404


async def _handshake(harness, station_id: str, password: str | None) -> tuple:
    """(status, WWW-Authenticate, content type, body) of a WebSocket handshake."""
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
               "Sec-WebSocket-Protocol": "ocpp1.6"}
    if password is not None:
        token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    async with harness.http.get(harness.url(f"/ocpp/{station_id}"), headers=headers) as resp:
        return (resp.status, resp.headers.get("WWW-Authenticate"),
                resp.headers.get("Content-Type"), await resp.text())


async def test_an_unknown_identity_is_answered_as_a_wrong_password_on_a_site_with_passwords(
        harness):
    """Stations with passwords (security profile 1/2): 404 for an identity the site file does
    not list and 401 for a listed one with a wrong password told a scanner which ids exist.
    The 404 is a SHOULD (OCPP-J section 3.2); here an unknown identity gets the very answer a
    wrong password gets, with or without credentials - and the same back-off after 10 tries."""
    wrong = await _handshake(harness, "CP1", "not-the-password-x")
    assert wrong[0] == 401
    assert await _handshake(harness, "NOT-DECLARED", PASSWORD) == wrong
    assert await _handshake(harness, "NOT-DECLARED", None) == wrong
    statuses = [(await _handshake(harness, name, "not-the-password-x"))[0]
                for name in ("CP2", "NOT-DECLARED-2") for _ in range(11)]
    assert statuses[:10] == statuses[11:21] == [401] * 10
    assert statuses[10] == statuses[21] == 429


@pytest.mark.parametrize("site", [make_site(accept_unknown_stations=True)])
async def test_unknown_station_accepted_as_pending_when_site_allows(harness):
    station = await harness.station("NEWCOMER", boot=False, password=None)
    answer = await station.boot()
    assert answer.status == "Pending"
    assert not harness.app[REGISTRY].get("NEWCOMER").boot_accepted


async def test_no_common_subprotocol_handshake_completes_then_closes(harness):
    # TC_088: complete the handshake without the header, then close at once
    ws = await harness.open_ws("CP1", protocols=("ocpp2.1", "ocpp1.5"))
    assert ws.protocol is None
    message = await ws.receive(timeout=5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.closed or message.data == aiohttp.WSCloseCode.PROTOCOL_ERROR
    assert "CP1" not in harness.app[REGISTRY].online_ids()


async def test_second_connection_replaces_the_first(harness):
    first = await harness.station("CP1")
    first_link = harness.app[REGISTRY].get("CP1")
    second = await harness.station("CP1")
    message = await first.ws.receive(timeout=5)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    second_link = harness.app[REGISTRY].get("CP1")
    assert second_link is not first_link and second_link.online and not first_link.online
    answer = await second.call(__import__("ocpp.v16.call", fromlist=["Heartbeat"]).Heartbeat(),
                               suppress=False)
    assert answer.current_time.endswith("Z")
    # the replaced connection does not report the station as gone
    await harness.wait_for(lambda: sum(isinstance(e, StationConnected)
                                       for e in harness.events) == 2)
    assert not any(isinstance(e, StationDisconnected) for e in harness.events)


async def test_disconnect_is_reported_and_link_removed(harness):
    station = await harness.station("CP2")
    await station.ws.close()
    await harness.wait_for(lambda: "CP2" not in harness.app[REGISTRY].online_ids())
    await harness.wait_for(lambda: any(isinstance(e, StationDisconnected)
                                       for e in harness.events))


async def test_boot_acceptance_survives_reconnect(harness):
    first = await harness.station("CP3")
    await first.ws.close()
    await harness.wait_for(lambda: "CP3" not in harness.app[REGISTRY].online_ids())
    again = await harness.station("CP3", boot=False)
    await harness.wait_for(lambda: harness.app[REGISTRY].get("CP3") is not None)
    assert harness.app[REGISTRY].get("CP3").boot_accepted   # no reboot, no new boot needed
    heartbeat = __import__("ocpp.v16.call", fromlist=["Heartbeat"]).Heartbeat()
    assert (await again.call(heartbeat, suppress=False)).current_time


@pytest.mark.parametrize("site", [make_site(server=__import__(
    "smartcharge.model", fromlist=["ServerSettings"]).ServerSettings(ping_interval_s=0.2))])
async def test_peer_that_stops_answering_pings_is_dropped(harness):
    import base64
    token = base64.b64encode(b"CP1:station-password-01").decode()
    # autoping off: this client never answers the server's pings, like a half-open socket
    ws = await harness.http.ws_connect(harness.url("/ocpp/CP1"), protocols=("ocpp1.6",),
                                       headers={"Authorization": f"Basic {token}"},
                                       autoping=False, heartbeat=None)
    harness.sockets.append(ws)
    await harness.wait_for(lambda: "CP1" in harness.app[REGISTRY].online_ids())
    await harness.wait_for(lambda: "CP1" not in harness.app[REGISTRY].online_ids(),
                           timeout_s=5)
    gone = [e for e in harness.events if isinstance(e, StationDisconnected)]
    assert gone and gone[0].station_id == "CP1"


async def test_calls_sent_back_to_back_are_queued_and_all_answered(harness):
    import json
    ws = await harness.open_ws("CP1")
    frames = [[2, "boot", "BootNotification", {"chargePointVendor": "V",
                                               "chargePointModel": "M"}]]
    frames += [[2, f"hb-{n}", "Heartbeat", {}] for n in range(5)]
    for frame in frames:                       # no waiting for answers in between
        await ws.send_str(json.dumps(frame))
    answers = [json.loads((await ws.receive(timeout=5)).data) for _ in frames]
    assert [a[1] for a in answers] == [f[1] for f in frames]
    assert all(a[0] == 3 for a in answers)
