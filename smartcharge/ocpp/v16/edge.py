"""OCPP 1.6J's names for the problems our edge finds (the checks are in `ocpp/edge.py`).

- not JSON / not an array / no UniqueId: `FormationViolation` (the 1.6 table's own spelling);
  a CALL with the wrong element count: `ProtocolError`; an unknown MessageTypeId:
  `PropertyConstraintViolation`;
- the library raises 2.0.1-style codes for 1.6 schema errors (`FormatViolation` for a bad enum
  value, `ProtocolError` for a missing field): they are named as the 1.6 table does
  (PropertyConstraintViolation, OccurenceConstraintViolation, TypeConstraintViolation,
  FormationViolation); from stations we accept both spellings of OccurenceConstraintViolation.
"""

from __future__ import annotations

from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    PropertyConstraintViolationError,
    ProtocolError,
)
from ocpp.v16.enums import Action

from smartcharge.ocpp.edge import Dialect

# the 1.6 table spells it this way; many stations send the corrected spelling
OCCURENCE_16 = "OccurenceConstraintViolation"

DIALECT = Dialect(
    version="1.6",
    actions=frozenset(action.value for action in Action),
    not_rpc=FormationViolationError,
    wrong_length=ProtocolError,
    bad_type_id=PropertyConstraintViolationError,
    format=FormationViolationError,
    occurrence=OccurenceConstraintViolationError,
    renames={FormatViolationError: FormationViolationError,
             OccurrenceConstraintViolationError: OccurenceConstraintViolationError},
    code_aliases={"OccurrenceConstraintViolation": OCCURENCE_16,
                  "FormatViolation": "FormationViolation"},
    # 1.6 part 2: StartTransaction.req connectorId > 0; 0 is the charge point in a status and
    # its main meter in meter values
    least_ids={"StartTransaction": (("connectorId", 1),),
               "StatusNotification": (("connectorId", 0),),
               "MeterValues": (("connectorId", 0),)},
)
