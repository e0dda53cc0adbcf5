"""Which adapter serves a connection: one table from negotiated subprotocol to adapter class.

A protocol joins by one entry here (and its ports in `ports.py`); the server offers the
protocols in `PREFERENCE` order, so a station that offers both gets the newest we speak.
"""

from __future__ import annotations

from smartcharge.ocpp.v16 import CentralSystemV16
from smartcharge.ocpp.v201 import CentralSystemV201

OCPP16, OCPP201 = "ocpp1.6", "ocpp2.0.1"

ADAPTER_CLASSES: dict[str, type] = {OCPP201: CentralSystemV201, OCPP16: CentralSystemV16}
PREFERENCE: tuple[str, ...] = (OCPP201, OCPP16)   # ours, best first


def choose_protocol(offered_header: str | None,
                    supported: tuple[str, ...] = PREFERENCE) -> str | None:
    """Our preferred subprotocol among those the station offered (`Sec-WebSocket-Protocol`,
    comma-separated), or None when there is none in common."""
    offered = {part.strip() for part in (offered_header or "").split(",") if part.strip()}
    return next((protocol for protocol in supported if protocol in offered), None)


__all__ = ["ADAPTER_CLASSES", "OCPP16", "OCPP201", "PREFERENCE", "choose_protocol"]
