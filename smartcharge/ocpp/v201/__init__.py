"""OCPP 2.0.1: the adapter (inbound calls -> ledger and domain events) and the library's gaps
filled at our edge, in 2.0.1's names; the control port (profiles, capabilities probing, the
rejection alternatives) and the remote commands."""

from smartcharge.ocpp.v201.adapter import CentralSystemV201

__all__ = ["CentralSystemV201"]
