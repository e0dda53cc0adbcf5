"""The gaps the `ocpp` library leaves, filled at our edge (never by forking it).

- a frame that is not JSON, or not an OCPP array: the library logs and drops it; OCPP-J 1.6 wants
  a CALLERROR (`FormationViolation`, the 1.6 table's own spelling) — with the message id when it
  can be read, else "-1";
- an action that OCPP 1.6 does not know: `NotImplemented` ("Requested Action is not known by
  receiver" in the 1.6 table; the library says NotSupported); a 1.6 action that a central system
  does not handle (e.g. RemoteStartTransaction sent by a station): `NotSupported`;
- `format: date-time` is not checked by the library: "yesterday" must be refused with
  `TypeConstraintViolation`, never stored;
- the library raises 2.0.1-style codes for 1.6 schema errors (`FormatViolation` for a bad enum
  value, `ProtocolError` for a missing field): `classify_schema_error` names them as the 1.6 table
  does (PropertyConstraintViolation, OccurenceConstraintViolation, TypeConstraintViolation,
  FormationViolation); from stations we accept both spellings of OccurenceConstraintViolation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema.exceptions import best_match
from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    NotImplementedError as OcppNotImplemented,
    NotSupportedError,
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    TypeConstraintViolationError,
)
from ocpp.messages import MessageType, get_validator
from ocpp.v16.enums import Action

from smartcharge.clock import parse_ocpp_time

OCPP16 = "1.6"
V16_ACTIONS = frozenset(action.value for action in Action)
# the 1.6 table spells it this way; many stations send the corrected spelling
OCCURENCE_16 = "OccurenceConstraintViolation"
_CODE_ALIASES = {"OccurrenceConstraintViolation": OCCURENCE_16,
                 "FormatViolation": "FormationViolation"}


def normalize_error_code(code: str) -> str:
    """Error codes stations send, in the 1.6 spelling (both spellings are accepted)."""
    return _CODE_ALIASES.get(code, code)


def as_v16_error(error: OCPPError) -> OCPPError:
    """The library's exception for a 1.6 peer, in the 1.6 table's own names."""
    if isinstance(error, FormatViolationError):
        return FormationViolationError(description=error.description, details=error.details)
    if isinstance(error, OccurrenceConstraintViolationError):
        return OccurenceConstraintViolationError(description=error.description,
                                                 details=error.details)
    return error


def call_error_frame(unique_id: str, error: OCPPError) -> str:
    error = as_v16_error(error)
    return json.dumps([MessageType.CallError, unique_id, error.code, error.description,
                       jsonable_details(error.details)], separators=(",", ":"))


def jsonable_details(details: Any) -> dict:
    """CALLERROR details must be an object; keep only what serialises (no message objects)."""
    if not isinstance(details, dict):
        return {}
    return {k: v for k, v in details.items() if isinstance(v, (str, int, float, bool))}


@dataclass(frozen=True)
class Frame:
    """An inbound frame after the structural checks: either a reply to send, or a message."""

    reply: str | None = None          # a CALLERROR to send back instead of routing the frame
    message: list | None = None       # the parsed array, safe to give to the library
    problem: str | None = None        # for the log


def inspect_frame(raw: str | bytes) -> Frame:
    """Check an inbound frame's JSON and array structure before the library sees it."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _refuse("-1", FormationViolationError(
            description="Frame is not valid JSON"), "not JSON")
    if not isinstance(message, list) or not message:
        return _refuse("-1", FormationViolationError(
            description="Frame is not an OCPP message array"), "not an array")
    unique_id = message[1] if len(message) > 1 and isinstance(message[1], str) else None
    type_id = message[0]
    if type_id not in (MessageType.Call, MessageType.CallResult, MessageType.CallError) \
            or isinstance(type_id, bool):
        return _refuse(unique_id or "-1", PropertyConstraintViolationError(
            description=f"MessageTypeId {type_id!r} is not 2, 3 or 4"), "bad MessageTypeId")
    if unique_id is None:
        if type_id == MessageType.Call:
            return _refuse("-1", FormationViolationError(
                description="UniqueId must be a string"), "no UniqueId")
        return Frame(problem="answer without a UniqueId")   # nothing to answer: drop
    if type_id == MessageType.Call:
        if len(message) != 4:
            return _refuse(unique_id, ProtocolError(
                description="A CALL has exactly 4 elements: [2, id, action, payload]"),
                "CALL with wrong element count")
        if not isinstance(message[2], str) or not isinstance(message[3], dict):
            return _refuse(unique_id, FormationViolationError(
                description="A CALL's action must be a string and its payload an object"),
                "CALL with bad action or payload type")
    elif type_id == MessageType.CallResult and (len(message) != 3
                                                or not isinstance(message[2], dict)):
        return Frame(problem="malformed CALLRESULT")
    elif type_id == MessageType.CallError and len(message) != 5:
        return Frame(problem="malformed CALLERROR")
    return Frame(message=message)


def _refuse(unique_id: str, error: OCPPError, problem: str) -> Frame:
    return Frame(reply=call_error_frame(unique_id, error), problem=problem)


def check_action(action: str, handled: set[str]) -> OCPPError | None:
    if action not in V16_ACTIONS:
        return OcppNotImplemented(description=f"Action {action!r} is not known by OCPP 1.6")
    if action not in handled:
        return NotSupportedError(description=f"Action {action} is not supported by a "
                                 "central system")
    return None


# jsonschema keyword that failed -> the OCPP-J 1.6 error code (table 4.2.3) that names it
_SCHEMA_ERRORS = {
    "type": TypeConstraintViolationError,
    "maxLength": TypeConstraintViolationError,     # CiString20Type etc. are data types
    "required": OccurenceConstraintViolationError,
    "minItems": OccurenceConstraintViolationError,
    "maxItems": OccurenceConstraintViolationError,
    "enum": PropertyConstraintViolationError,
    "minimum": PropertyConstraintViolationError,
    "maximum": PropertyConstraintViolationError,
    "multipleOf": PropertyConstraintViolationError,
    "pattern": PropertyConstraintViolationError,
    "additionalProperties": FormationViolationError,
}


def classify_schema_error(action: str, payload: dict) -> OCPPError | None:
    """The 1.6 CALLERROR for a CALL payload that breaks its schema, or None if it does not.

    The library validates and raises 2.0.1-style codes (FormatViolation for an enum value,
    ProtocolError for a missing field); the 1.6 table names them differently."""
    try:
        validator = get_validator(MessageType.Call, action, OCPP16)
    except (OSError, ValueError):
        return None
    error = best_match(validator.iter_errors(payload))
    if error is None:
        return None
    where = ".".join(str(part) for part in error.absolute_path) or "payload"
    kind = _SCHEMA_ERRORS.get(error.validator, FormationViolationError)
    return kind(description=f"{where}: {error.message}"[:500])


def check_date_times(action: str, payload: dict) -> OCPPError | None:
    """TypeConstraintViolation for a `date-time` field that is not RFC 3339 with a zone."""
    bad = _bad_date_time(_schema(MessageType.Call, action), payload, "")
    if bad is None:
        return None
    path, value = bad
    return TypeConstraintViolationError(
        description=f"{path.lstrip('.')} must be an RFC 3339 date-time, got {value!r}")


@cache
def _schema(message_type: int, action: str) -> dict:
    try:
        return get_validator(message_type, action, OCPP16).schema
    except (OSError, ValueError):
        return {}


def _bad_date_time(schema: dict, value: Any, path: str) -> tuple[str, Any] | None:
    if isinstance(value, dict):
        for key, sub_schema in schema.get("properties", {}).items():
            if key in value:
                found = _bad_date_time(sub_schema, value[key], f"{path}.{key}")
                if found:
                    return found
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found = _bad_date_time(schema["items"], item, f"{path}[{index}]")
            if found:
                return found
    elif schema.get("format") == "date-time" and isinstance(value, str):
        try:
            parse_ocpp_time(value)
        except ValueError:
            return path, value
    return None


def bad_date_time_in_answer(action: str, payload: dict) -> str | None:
    """For answers to our calls: the path of a malformed date-time, or None."""
    found = _bad_date_time(_schema(MessageType.CallResult, action), payload, "")
    return found[0].lstrip(".") if found else None
