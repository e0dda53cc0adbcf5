"""OCPP 2.0.1's names for the problems our edge finds (the checks are in `ocpp/edge.py`).

OCPP-J 2.0.1 (part 4, 4.3) names: a frame that is not a valid RPC message (not JSON, not an
array, no readable message id, a CALL with the wrong element count): `RpcFrameworkError`; an
unknown MessageTypeId: `MessageTypeNotSupported`; a payload that is syntactically wrong:
`FormatViolation` (1.6 said FormationViolation); a required field missing:
`OccurrenceConstraintViolation` (spelled correctly now). The `ocpp` library has no class for
the first two, so they are here (the library's CALLERROR parser then knows them too).
"""

from __future__ import annotations

from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    OCPPError,
)
from ocpp.v201.enums import Action

from smartcharge.ocpp.edge import Dialect


class RpcFrameworkError(OCPPError):
    code = "RpcFrameworkError"
    default_description = "Content of the call is not a valid RPC Request"


class MessageTypeNotSupportedError(OCPPError):
    code = "MessageTypeNotSupported"
    default_description = "A message with a Message Type Number that is not supported"


DIALECT = Dialect(
    version="2.0.1",
    actions=frozenset(action.value for action in Action),
    not_rpc=RpcFrameworkError,
    wrong_length=RpcFrameworkError,
    bad_type_id=MessageTypeNotSupportedError,
    format=FormatViolationError,
    occurrence=OccurrenceConstraintViolationError,
    renames={FormationViolationError: FormatViolationError,
             OccurenceConstraintViolationError: OccurrenceConstraintViolationError},
    code_aliases={"OccurenceConstraintViolation": "OccurrenceConstraintViolation",
                  "FormationViolation": "FormatViolation"},
    # EVSEType.id > 0 (a transaction is on an EVSE); NotifyEVChargingNeeds / Schedule: "evseId
    # may not be 0"; elsewhere 0 is the station (or its main meter), never below
    least_ids={"TransactionEvent": (("evse.id", 1), ("evse.connectorId", 0)),
               "NotifyEVChargingNeeds": (("evseId", 1),),
               "NotifyEVChargingSchedule": (("evseId", 1),),
               "StatusNotification": (("evseId", 0), ("connectorId", 0)),
               "MeterValues": (("evseId", 0),),
               "NotifyChargingLimit": (("evseId", 0),),
               "ClearedChargingLimit": (("evseId", 0),),
               "ReportChargingProfiles": (("evseId", 0),)},
)
