"""Remote commands through the version-neutral command port (issue 8): the REST layer and the
site import no protocol package; the API says which OCPP version a station speaks; the protocol
a station negotiated picks the command set."""

from pathlib import Path

import pytest

from smartcharge.ocpp.commands import CommandInvalid, Fields
from smartcharge.ocpp.port import UnknownProtocol
from smartcharge.ocpp.ports import commands_for, ocpp_version
from test_station_port import _imported_modules

ROOT = Path(__file__).resolve().parent.parent / "smartcharge"
FORBIDDEN = ("ocpp.v16", "ocpp.v201", "smartcharge.ocpp.v16", "smartcharge.ocpp.v201")


@pytest.mark.parametrize("path", sorted((ROOT / "api").glob("*.py"))
                         + sorted((ROOT / "site").glob("*.py")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_api_and_site_import_no_protocol_version_package(path):
    found = [m for m in _imported_modules(path)
             if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert found == [], f"{path.parent.name}/{path.name} imports {found}"


def test_the_negotiated_protocol_picks_the_command_set():
    commands = commands_for("ocpp1.6")
    assert commands_for(None) is commands   # an offline station: checked as the default
    request = commands.build("reset", Fields({"type": "Soft"}, {"type"}), {})
    assert commands.action(request) == "Reset"
    with pytest.raises(CommandInvalid, match="type must be one of Hard, Soft"):
        commands.build("reset", Fields({"type": "Warm"}, {"type"}), {})
    with pytest.raises(UnknownProtocol, match="'ocpp9'"):
        commands_for("ocpp9")
    assert (ocpp_version("ocpp1.6"), ocpp_version("ocpp2.0.1"), ocpp_version(None)) == (
        "1.6", "2.0.1", None)


async def test_stations_say_which_ocpp_version_they_speak(harness):
    await harness.station("CP1")
    stations = await (await harness.api.get(harness.url("/api/stations"))).json()
    by_id = {s["station_id"]: s for s in stations}
    assert by_id["CP1"]["ocpp_version"] == "1.6"
    assert by_id["CP3"]["ocpp_version"] is None and not by_id["CP3"]["online"]
    one = await (await harness.api.get(harness.url("/api/stations/CP1"))).json()
    assert one["ocpp_version"] == "1.6"
