"""The inbound calls besides transactions: answers as the spec says, and what is stored."""

from __future__ import annotations

import re

from ocpp.v16 import call

from smartcharge.events import ConnectorStatusChanged, StationBooted

WHOLE_SECOND_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_boot_and_heartbeat_send_whole_second_utc(harness):
    station = await harness.station("CP1", boot=False)
    boot = await station.boot()
    assert boot.status == "Accepted" and boot.interval == 300
    assert WHOLE_SECOND_UTC.match(boot.current_time)
    beat = await station.call(call.Heartbeat(), suppress=False)
    assert WHOLE_SECOND_UTC.match(beat.current_time)
    booted = [e for e in harness.events if isinstance(e, StationBooted)]
    assert booted[0].accepted and booted[0].vendor == "Test"


async def test_authorize_known_and_unknown_tags(harness):
    station = await harness.station("CP1")
    good = await station.call(call.Authorize(id_tag="DRIVER-1"), suppress=False)
    bad = await station.call(call.Authorize(id_tag="STRANGER"), suppress=False)
    assert good.id_tag_info["status"] == "Accepted"
    assert bad.id_tag_info["status"] == "Invalid"
    await harness.store.run(lambda tx: tx.put_id_tag("BLOCKED-1", "Blocked"))
    blocked = await station.call(call.Authorize(id_tag="BLOCKED-1"), suppress=False)
    assert blocked.id_tag_info["status"] == "Blocked"


async def test_status_notification_is_stored_published_and_listed(harness):
    station = await harness.station("CP2")
    await station.call(call.StatusNotification(
        connector_id=2, error_code="NoError", status="Charging",
        timestamp="2026-01-01T10:00:00Z"), suppress=False)
    changed = [e for e in harness.events if isinstance(e, ConnectorStatusChanged)]
    assert [(e.connector_id, e.status) for e in changed] == [(2, "Charging")]
    stations = await (await harness.api.get(harness.url("/api/stations/CP2"))).json()
    assert stations["connectors"] == [{"connector_id": 2, "status": "Charging",
                                       "error_code": "NoError",
                                       "timestamp": "2026-01-01T10:00:00.000000+00:00"}]


async def test_data_transfer_firmware_and_diagnostics_are_recorded(harness):
    station = await harness.station("CP3")
    answer = await station.call(call.DataTransfer(vendor_id="com.acme", message_id="x",
                                                  data="42"), suppress=False)
    assert answer.status == "UnknownVendorId"        # we implement no vendor extension
    await station.call(call.FirmwareStatusNotification(status="Downloading"), suppress=False)
    await station.call(call.DiagnosticsStatusNotification(status="Uploaded"), suppress=False)
    listed = await (await harness.api.get(harness.url("/api/stations/CP3"))).json()
    assert (listed["firmware_status"], listed["diagnostics_status"]) == ("Downloading",
                                                                         "Uploaded")
    transfers = await harness.store.run(lambda tx: tx.data_transfers("CP3"))
    assert [(t["vendor_id"], t["message_id"], t["data"]) for t in transfers] == [
        ("com.acme", "x", "42")]
