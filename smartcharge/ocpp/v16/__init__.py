"""OCPP 1.6J: the adapter (inbound calls -> ledger and domain events), the library's gaps filled
at our edge (in 1.6's names), SetChargingProfile payloads, and the 1.6 side of the control port
(capability probing with GetConfiguration, the rejection alternatives)."""

from smartcharge.ocpp.central import AdapterContext, ConnectionClosed
from smartcharge.ocpp.v16.adapter import CentralSystemV16

__all__ = ["AdapterContext", "CentralSystemV16", "ConnectionClosed"]
