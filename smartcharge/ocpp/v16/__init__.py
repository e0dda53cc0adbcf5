"""OCPP 1.6J: the adapter (inbound calls -> ledger and domain events), the library's gaps filled
at our edge, SetChargingProfile payloads, and the 1.6 side of the control port (capability
probing with GetConfiguration, the rejection alternatives)."""

from smartcharge.ocpp.v16.adapter import AdapterContext, CentralSystemV16, ConnectionClosed

__all__ = ["AdapterContext", "CentralSystemV16", "ConnectionClosed"]
