"""A strict station's rule, for the simulator of either version: until it has read the answer
to its BootNotification on this connection (Accepted, or Pending: then the central system may
ask it things) it answers every call of the central system with a SecurityError CALLERROR
(the `refuse_before_boot` quirk).

OCPP 1.6 4.2 and 2.0.1 B01-B03: the central system talks to a station once its boot is
accepted; a station that has just rebooted (a new connection, its BootNotification on the way)
is not registered yet, whatever it was before."""

from __future__ import annotations

import json

BOOT_ANSWER_KEYS = frozenset({"currentTime", "interval", "status"})   # 1.6 and 2.0.1 alike


class RefuseBeforeBoot:
    """Mixin before a simulator's `ocpp` ChargePoint (needs `station` and `_send`)."""

    registered = False   # a protocol object lives for one connection: a new one starts False

    async def route_message(self, raw_msg: str) -> None:
        if self.registered:   # the frames of a registered station are the library's alone
            await super().route_message(raw_msg)
            return
        try:
            message = json.loads(raw_msg)
        except ValueError:
            message = None
        if not isinstance(message, list) or len(message) < 3:
            await super().route_message(raw_msg)
            return
        if message[0] == 3 and isinstance(message[2], dict) \
                and BOOT_ANSWER_KEYS <= set(message[2]):
            # from the moment it reads the answer, before its boot call returns; told
            # Pending it answers the central system too (1.6 4.2, 2.0.1 B02)
            self.registered = message[2]["status"] in ("Accepted", "Pending")
        if message[0] == 2 and not self.registered and self.station.quirks.refuse_before_boot:
            self.station.refused_before_boot.append(message[2])
            await self._send(json.dumps([4, message[1], "SecurityError", "not registered yet",
                                         {}]))
            return
        await super().route_message(raw_msg)
