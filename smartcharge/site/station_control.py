"""What dispatch knows of one station: its port (what it takes, in which unit), what it was
told and accepted - the plan per connector, the idle default under it, the fail-safe default
under that."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from smartcharge.ocpp.port import FOREVER, Capabilities, Installed, StationPort
from smartcharge.site.watched import WatchedDict

Sent = Installed   # what a connector was last told (accepted)


class CountingLock(asyncio.Lock):
    """A station's lock that counts its holders: what a round compared while it was free is
    stale once another holder had it (a setup, a probe, an older round's request may have
    changed what the station accepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.holds = 0

    async def acquire(self) -> bool:
        await super().acquire()
        self.holds += 1
        return True

_UNSET = object()
# the per-connector layers the guard reads (installed.py): watched item by item
_LAYERS = frozenset({"sent", "idle_layer", "default_layer"})

__all__ = ["FOREVER", "CountingLock", "Sent", "StationControl"]


@dataclass
class StationControl:
    station_id: str
    config_unit: str = "A"                 # the site file's unit, until a port says otherwise
    # the port for the current connection (None: not connected since start, or its protocol
    # has no port); made by setup, bound to `port_link`: a reconnect gets a fresh one
    port: StationPort | None = None
    port_link: object | None = None
    # (every node's W limit now, later (moment, node limits) changes) the defaults were last
    # found equal to (nothing to compare while it holds)
    defaults_key: tuple | None = None
    # connector id -> the fail-safe default last sent, as W steps (what a new one is compared
    # with: only a connector whose default changes gets one)
    default_sent: dict[int, list] = field(default_factory=dict)
    sent: dict[int, Sent] = field(default_factory=dict)   # connector id -> last accepted
    idle_sent: dict[int, tuple[float, datetime]] = field(default_factory=dict)  # W, expires
    # what the station has installed under the plan, as accepted: its idle default (idle share
    # or a plan sent as the connector's default) and its fail-safe default
    idle_layer: dict[int, Sent] = field(default_factory=dict)
    # connectors whose last accepted plan went out as their default (told to the controller)
    plans_on_default: set[int] = field(default_factory=set)
    default_layer: dict[int, Sent] = field(default_factory=dict)
    # (W, A per phase) of the station's maximum profile while it is accepted on this
    # connection (None: not sent yet, or refused): the guard caps its connectors' estimates
    station_max: tuple[float, float] | None = None
    setup_link: object | None = None       # the connection the fail-safe setup went out on
    resend: bool = False                   # set up again: send every plan, changed or not
    booted_link: object | None = None      # the connection a BootNotification came on
    lock: CountingLock = field(default_factory=CountingLock)

    # What the guard counts a connector at depends on what its station accepted: every change
    # of this record - an attribute set to another value, an item of one of its layers set or
    # removed - is told to its watchers with the station's id (guard_counts.py keeps each
    # connector's count until then). The layers are WatchedDicts, whatever is assigned.
    def __setattr__(self, name: str, value) -> None:
        if name in _LAYERS and not isinstance(value, WatchedDict):
            value = WatchedDict(value)
        old = self.__dict__.get(name, _UNSET)
        object.__setattr__(self, name, value)
        if name in _LAYERS:
            value.watch(self._layer_changed)
        if old is _UNSET or old is value or (not isinstance(value, dict) and old == value):
            return
        self._changed()

    def watch(self, watcher) -> None:
        """Call `watcher(station_id)` after every change of what this record says."""
        watchers = self.__dict__.setdefault("_watchers", [])
        if watcher not in watchers:
            watchers.append(watcher)

    def _layer_changed(self, _connector_id) -> None:
        self._changed()

    def _changed(self) -> None:
        for watcher in self.__dict__.get("_watchers", ()):
            watcher(self.station_id)

    @property
    def caps(self) -> Capabilities | None:
        return None if self.port is None else self.port.caps

    @property
    def unit(self) -> str:
        return self.config_unit if self.port is None else self.port.unit

    @property
    def zero_ok(self) -> bool:
        return True if self.port is None else self.port.zero_ok
