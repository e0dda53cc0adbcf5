"""Which ports a connection gets: the protocol the station negotiated picks the control port
class (what the site sends) and the command set (what the REST API sends).

A protocol joins by one entry in `PORT_CLASSES` and one in `COMMAND_SETS` (e.g. `"ocpp2.0.1":
V201StationPort`); the site is handed the factory (`appkeys.PORTS`), the API asks
`commands_for`, and neither names a protocol.
"""

from __future__ import annotations

from smartcharge.clock import Clock
from smartcharge.ocpp.commands import StationCommands
from smartcharge.ocpp.port import (PortFactory, PortSettings, Recorder, StationPort,
                                   UnknownProtocol)
from smartcharge.ocpp.registry import StationLink
from smartcharge.ocpp.v16.commands import V16Commands
from smartcharge.ocpp.v16.station_port import V16StationPort
from smartcharge.ocpp.v201.commands import V201Commands
from smartcharge.ocpp.v201.station_port import V201StationPort

# what an offline station is addressed as (a request is checked before we know its link)
DEFAULT_PROTOCOL = "ocpp1.6"

# negotiated WebSocket subprotocol -> the port class for it
PORT_CLASSES: dict[str, type[StationPort]] = {"ocpp1.6": V16StationPort,
                                               "ocpp2.0.1": V201StationPort}
COMMAND_SETS: dict[str, StationCommands] = {"ocpp1.6": V16Commands(),
                                             "ocpp2.0.1": V201Commands()}

# protocol -> the OCPP version the API shows ("1.6", "2.0.1")
VERSIONS: dict[str, str] = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1"}


def commands_for(protocol: str | None) -> StationCommands:
    """The remote commands for a station speaking `protocol` (None: offline, the default)."""
    commands = COMMAND_SETS.get(protocol or DEFAULT_PROTOCOL)
    if commands is None:
        raise UnknownProtocol(f"no remote commands for protocol {protocol!r} "
                              f"(known: {', '.join(sorted(COMMAND_SETS))})")
    return commands


def ocpp_version(protocol: str | None) -> str | None:
    """The OCPP version a negotiated subprotocol names (None: not connected)."""
    if protocol is None:
        return None
    return VERSIONS.get(protocol, protocol.removeprefix("ocpp"))


def port_factory(clock: Clock,
                 classes: dict[str, type[StationPort]] | None = None) -> PortFactory:
    """The factory the site is given: a station's link -> a fresh port bound to it."""
    table = PORT_CLASSES if classes is None else classes

    def make(link: StationLink, record: Recorder, *, voltage_v: float, unit: str,
             settings: PortSettings) -> StationPort:
        port_class = table.get(link.protocol)
        if port_class is None:
            raise UnknownProtocol(
                f"station {link.station_id}: no control port for protocol {link.protocol!r} "
                f"(known: {', '.join(sorted(table)) or 'none'})")
        return port_class(link, clock, record, voltage_v=voltage_v, unit=unit,
                          settings=settings)
    return make


def all_commands() -> dict[str, tuple[str, set[str]]]:
    """Every command some protocol offers: the REST routes (name -> method, body fields)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for commands in COMMAND_SETS.values():
        out.update(commands.catalogue)
    return out


__all__ = ["COMMAND_SETS", "DEFAULT_PROTOCOL", "PORT_CLASSES", "VERSIONS", "all_commands",
           "commands_for", "ocpp_version", "port_factory"]
