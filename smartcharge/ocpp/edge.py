"""The gaps the `ocpp` library leaves, filled at our edge (never by forking it), for any version.

The checks are the same for OCPP 1.6J and 2.0.1; only the names of the errors differ, so each
version package gives a `Dialect` (`v16/edge.py`, `v201/edge.py`) and these functions take it:
- a frame that is not JSON, not an array, or has no readable message id: the library logs and
  drops it; OCPP-J wants a CALLERROR (1.6: `FormationViolation`; 2.0.1: `RpcFrameworkError`) —
  with the message id when it can be read, else "-1";
- an unknown MessageTypeId (1.6: `PropertyConstraintViolation`; 2.0.1: `MessageTypeNotSupported`);
- an action the version does not know: `NotImplemented` ("Requested Action is not known by
  receiver"; the library says NotSupported); one a central system does not handle (e.g.
  RemoteStartTransaction sent by a station): `NotSupported`;
- `format: date-time` is not checked by the library: "yesterday" must be refused with
  `TypeConstraintViolation`, never stored; so is an `integer` outside OCPP's 32 bits (a
  transactionId of 2**63 does not fit the store, nor any station's own);
- a frame over `MAX_FRAME_CHARS` (1 Mi characters, more than any message a station needs:
  reports and logs come in parts or by file upload) is not parsed: a CALL gets the CALLERROR of
  a malformed message (1.6 `FormationViolation`, 2.0.1 `FormatViolation`) with its message id,
  read from the frame's head; an answer is not read (`Frame.answer_id`). The connection stays:
  closing it (WebSocket 1009) made a station that had queued the message reconnect and send it
  again, forever. The server reads frames up to 4 MiB (`server.MAX_RECEIVED_BYTES`) and closes
  with 1009 past that, a memory bound per connection;
- an id the spec numbers from 1 (a 1.6 transaction's connector, a 2.0.1 transaction's EVSE)
  or from 0 (a status's connector, a meter's EVSE: 0 is the station, its main meter) below
  that: `PropertyConstraintViolation` (the schemas leave them unbounded; a transaction on
  connector 0 or -1 was billed and neither planned nor guarded) - each version's `least_ids`;
- a CALLERROR's description is cut to OCPP-J's 255 characters (it may quote the station's
  own text);
- NaN and Infinity are not JSON (RFC 8259), though Python's parser reads them: such a frame is
  refused like any other that is not JSON;
- a lone surrogate escape (`"\\ud800"`) is JSON's syntax but no Unicode text: a CALL with one
  anywhere gets the malformed message's CALLERROR with its id (the store could not encode it:
  an InternalError); an answer with one is not read;
- an answer that cannot be read as one (those two, or not a CALLRESULT's or CALLERROR's shape)
  but carries a message id: the call waiting on that id is told at once (`Frame.answer_id`;
  `central.py`), instead of waiting for its timeout as if the station had said nothing;
- the library raises 2.0.1-style codes for schema errors of every version (`FormatViolation`
  for a bad enum value, `ProtocolError` for a missing field): `classify_schema_error` names them
  as the version's table does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from jsonschema.exceptions import best_match
from ocpp.exceptions import (
    NotImplementedError as OcppNotImplemented,
    NotSupportedError,
    OCPPError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)
from ocpp.messages import Call, MessageType, get_validator

from smartcharge.clock import parse_ocpp_time
from smartcharge.ocpp import fast_schema

MAX_FRAME_CHARS = 1 << 20
# the head of an OCPP frame: [MessageTypeId, "UniqueId" (at most 36 characters in OCPP-J)
_HEAD = re.compile(r'\s*\[\s*(\d{1,3})\s*,\s*"([^"\\]{1,64})"')


MAX_DESCRIPTION_CHARS = 255   # OCPP-J errorDescription (2.0.1 part 4 4.2.3)


def short_description(description: str | None) -> str:
    """A CALLERROR's description within OCPP-J's 255 characters: it may quote what the
    station sent (an action, a value far past its maxLength), and a strict peer refuses a
    longer one."""
    text = description or ""
    if len(text) <= MAX_DESCRIPTION_CHARS:
        return text
    return text[:MAX_DESCRIPTION_CHARS - 3] + "..."


@dataclass(frozen=True)
class Dialect:
    """What differs between OCPP-J versions at the edge: the library's version string, the
    actions the version knows, and which error class names each kind of problem."""

    version: str                           # the `ocpp` library's name: "1.6", "2.0.1"
    actions: frozenset[str]
    not_rpc: type[OCPPError]               # not JSON, not an array, no message id
    wrong_length: type[OCPPError]          # a CALL that is not [2, id, action, payload]
    bad_type_id: type[OCPPError]           # MessageTypeId not 2, 3 or 4
    format: type[OCPPError]                # syntactically wrong payload (additionalProperties)
    occurrence: type[OCPPError]            # a required field missing, too few/many items
    # the library's class -> ours, for errors the library raises in its own (2.0.1) names
    renames: dict[type[OCPPError], type[OCPPError]] = field(default_factory=dict)
    # error codes stations send -> the spelling this version's table uses
    code_aliases: dict[str, str] = field(default_factory=dict)
    # action -> ((dotted path, least value), ...): the ids the spec numbers from 0 or 1 (the
    # schemas leave them unbounded); a smaller one is PropertyConstraintViolation
    least_ids: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)

    def as_own_error(self, error: OCPPError) -> OCPPError:
        """The library's exception in this version's table's own names."""
        own = self.renames.get(type(error))
        return own(description=error.description, details=error.details) if own else error

    def normalize_error_code(self, code: str) -> str:
        """An error code a station sent, in this version's spelling (both are accepted)."""
        return self.code_aliases.get(code, code)

    def call_error_frame(self, unique_id: str, error: OCPPError) -> str:
        error = self.as_own_error(error)
        return json.dumps([MessageType.CallError, unique_id, error.code,
                           short_description(error.description),
                           jsonable_details(error.details)], separators=(",", ":"))

    # -- the checks -------------------------------------------------------------------------
    def inspect_frame(self, raw: str) -> Frame:
        """Check an inbound frame's size, JSON and array structure before the library sees
        it."""
        if len(raw) > MAX_FRAME_CHARS:
            return self._oversized(raw)
        try:
            message = _DECODER.decode(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):   # nested past the parser
            return self._refuse("-1", self.not_rpc(description="Frame is not valid JSON"),
                                "not JSON")
        if not isinstance(message, list) or not message:
            return self._refuse("-1", self.not_rpc(
                description="Frame is not an OCPP message array"), "not an array")
        unique_id = message[1] if len(message) > 1 and isinstance(message[1], str) else None
        type_id = message[0]
        if type_id not in (MessageType.Call, MessageType.CallResult, MessageType.CallError) \
                or isinstance(type_id, bool):
            return self._refuse(unique_id or "-1", self.bad_type_id(
                description=f"MessageTypeId {type_id!r} is not 2, 3 or 4"), "bad MessageTypeId")
        if unique_id is None:
            if type_id == MessageType.Call:
                return self._refuse("-1", self.not_rpc(
                    description="UniqueId must be a string"), "no UniqueId")
            return Frame(problem="answer without a UniqueId")   # nothing to answer: drop
        if type_id == MessageType.Call:
            if len(message) != 4:
                return self._refuse(unique_id, self.wrong_length(
                    description="A CALL has exactly 4 elements: [2, id, action, payload]"),
                    "CALL with wrong element count")
            if not isinstance(message[2], str) or not isinstance(message[3], dict):
                return self._refuse(unique_id, self.format(
                    description="A CALL's action must be a string and its payload an object"),
                    "CALL with bad action or payload type")
        elif type_id == MessageType.CallResult and (len(message) != 3
                                                    or not isinstance(message[2], dict)):
            return Frame(problem="malformed CALLRESULT", answer_id=unique_id)
        elif type_id == MessageType.CallError and (len(message) != 5
                                                   or not isinstance(message[2], str)):
            return Frame(problem="malformed CALLERROR", answer_id=unique_id)
        # only a frame with an escape can hold one (the text itself came as UTF-8)
        if "\\u" in raw and _has_lone_surrogate(message):
            if type_id != MessageType.Call:
                return Frame(problem="an answer with a lone surrogate", answer_id=unique_id)
            return self._refuse(unique_id, self.format(
                description="A string holds a lone surrogate escape (\\uD800-\\uDFFF): not "
                            "Unicode text"), "lone surrogate")
        return Frame(message=message)

    def _oversized(self, raw: str) -> Frame:
        """A frame too big to parse: only its head is read."""
        match = _HEAD.match(raw[:200])
        problem = f"a frame of {len(raw)} characters"
        if match is None:
            return self._refuse("-1", self.not_rpc(
                description="Frame is too large and not an OCPP message array"), problem)
        type_id = int(match.group(1))
        if type_id in (MessageType.CallResult, MessageType.CallError):
            return Frame(problem=problem + " that is no CALL", answer_id=match.group(2))
        if type_id != MessageType.Call:
            return self._refuse(match.group(2), self.bad_type_id(
                description=f"MessageTypeId {type_id} is not 2, 3 or 4"), problem)
        return self._refuse(match.group(2), self.format(
            description=f"Message of {len(raw)} characters; at most {MAX_FRAME_CHARS} are "
                        "accepted"), problem)

    def _refuse(self, unique_id: str, error: OCPPError, problem: str) -> Frame:
        return Frame(reply=self.call_error_frame(unique_id, error), problem=problem)

    def check_action(self, action: str, handled: set[str]) -> OCPPError | None:
        if action not in self.actions:
            return OcppNotImplemented(
                description=f"Action {action!r} is not known by OCPP {self.version}")
        if action not in handled:
            return NotSupportedError(description=f"Action {action} is not supported by a "
                                     "central system")
        return None

    def classify_schema_error(self, action: str, payload: dict,
                              message_type: int = MessageType.Call) -> OCPPError | None:
        """The CALLERROR for a CALL payload that breaks its schema, or None if it does not;
        with `message_type` CallResult, the error an answer to our call is (named as a CALL's
        would be: the station's answer gets no CALLERROR, the error says what is wrong)."""
        try:
            validator = get_validator(message_type, action, self.version)
        except (OSError, ValueError):
            return None
        error = best_match(validator.iter_errors(payload))
        if error is None:
            return None
        where = ".".join(str(part) for part in error.absolute_path) or "payload"
        kind = {"required": self.occurrence, "minItems": self.occurrence,
                "maxItems": self.occurrence}.get(error.validator) \
            or _SCHEMA_ERRORS.get(error.validator, self.format)
        return kind(description=f"{where}: {error.message}"[:500])

    def check_values(self, action: str, payload: dict) -> OCPPError | None:
        """TypeConstraintViolation for a `date-time` field that is not RFC 3339 with a zone, or
        an `integer` outside OCPP's 32 bits."""
        bad = _bad_date_time(_schema(MessageType.Call, action, self.version), payload, "",
                             integers=True)
        if bad is None:
            return self._id_below_range(action, payload)
        path, value = bad
        kind = "a 32-bit integer" if isinstance(value, int) else "an RFC 3339 date-time"
        return TypeConstraintViolationError(
            description=f"{path.lstrip('.')} must be {kind}, got {value!r}"[:500])

    def _id_below_range(self, action: str, payload: dict) -> OCPPError | None:
        for path, least in self.least_ids.get(action, ()):
            value: Any = payload
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value < least:
                return PropertyConstraintViolationError(
                    description=f"{path} must be at least {least}, got {value}")
        return None

    def bad_date_time_in_answer(self, action: str, payload: dict) -> str | None:
        """For answers to our calls: the path of a malformed date-time, or None."""
        found = _bad_date_time(_schema(MessageType.CallResult, action, self.version), payload,
                               "")
        return found[0].lstrip(".") if found else None


@dataclass(frozen=True)
class Frame:
    """An inbound frame after the structural checks: either a reply to send, or a message."""

    reply: str | None = None          # a CALLERROR to send back instead of routing the frame
    message: list | None = None       # the parsed array, safe to give to the library
    problem: str | None = None        # for the log
    # an answer we cannot read whose message id we can: the call waiting on that id has its
    # answer - an unreadable one - now, not at its timeout
    answer_id: str | None = None


def jsonable_details(details: Any) -> dict:
    """CALLERROR details must be an object; keep only what serialises (no message objects)."""
    if not isinstance(details, dict):
        return {}
    return {k: v for k, v in details.items() if isinstance(v, (str, int, float, bool))}


async def schema_problem(action: str, payload: dict, version: str) -> str | None:
    """Why a request `payload` of `action` breaks the `version` schema (the library's cause),
    or None: for requests we build (ours, or the API's), never for what a station sends."""
    try:
        await fast_schema.validate(Call("check", action, payload), version)
    except OCPPError as error:
        cause = error.details.get("cause") if isinstance(error.details, dict) else None
        return cause or error.description
    # no Unicode text: we refuse such a frame from a station (the malformed message's
    # CALLERROR), and so does a strict station ours
    if _has_lone_surrogate(payload):
        return "a string holds a lone surrogate (\\uD800-\\uDFFF): not Unicode text"
    # the schemas leave OCPP's 32 bits out: a strict station refuses a bigger integer
    bad = _bad_date_time(_schema(MessageType.Call, action, version), payload, "",
                         integers=True)
    if bad is not None and isinstance(bad[1], int):
        return f"{bad[0].lstrip('.')} must be a 32-bit integer, got {bad[1]}"
    return None


# jsonschema keyword that failed -> the OCPP-J error code that names it (the same in 1.6 table
# 4.2.3 and 2.0.1 part 4; occurrence and format errors are spelled per version, see Dialect)
_SCHEMA_ERRORS = {
    "type": TypeConstraintViolationError,
    "maxLength": TypeConstraintViolationError,     # CiString20Type etc. are data types
    "enum": PropertyConstraintViolationError,
    "minimum": PropertyConstraintViolationError,
    "maximum": PropertyConstraintViolationError,
    "multipleOf": PropertyConstraintViolationError,
    "pattern": PropertyConstraintViolationError,
}


@cache
def _schema(message_type: int, action: str, version: str) -> dict:
    try:
        return get_validator(message_type, action, version).schema
    except (OSError, ValueError):
        return {}


INT32 = range(-2 ** 31, 2 ** 31)     # OCPP's `integer` (1.6 and 2.0.1: 32 bits, signed)


def _has_lone_surrogate(value: Any, depth: int = 0) -> bool:
    """A string (or key) anywhere in `value` with an unpaired surrogate: JSON's syntax allows
    the escape, but it is no Unicode text (RFC 8259 8.2) - no UTF-8 holds it, and the store
    raised on it (an InternalError, the message never stored)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if depth > 200:   # the decoder's recursion bound came first; nothing this deep is ours
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k, depth + 1) or _has_lone_surrogate(v, depth + 1)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item, depth + 1) for item in value)
    return False


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


# made once: `json.loads` with an argument built a decoder for every frame (issue 10)
_DECODER = json.JSONDecoder(parse_constant=_not_json)


def _bad_date_time(schema: dict, value: Any, path: str, root: dict | None = None, *,
                   integers: bool = False) -> tuple[str, Any] | None:
    """The first (path, value) that is a malformed date-time (with `integers`, also an
    integer outside 32 bits), or None."""
    root = schema if root is None else root
    if "$ref" in schema:   # 2.0.1 schemas point into their own `definitions`
        schema = _resolve(root, schema["$ref"])
    if isinstance(value, dict):
        for key, sub_schema in schema.get("properties", {}).items():
            if key in value and _has_checks(sub_schema, root, integers):
                found = _bad_date_time(sub_schema, value[key], f"{path}.{key}", root,
                                       integers=integers)
                if found:
                    return found
    elif isinstance(value, list) and isinstance(schema.get("items"), dict) \
            and _has_checks(schema["items"], root, integers):
        for index, item in enumerate(value):
            found = _bad_date_time(schema["items"], item, f"{path}[{index}]", root,
                                   integers=integers)
            if found:
                return found
    elif schema.get("format") == "date-time" and isinstance(value, str):
        try:
            parse_ocpp_time(value)
        except ValueError:
            return path, value
    elif integers and schema.get("type") == "integer" and isinstance(value, int) \
            and not isinstance(value, bool) and value not in INT32:
        return path, value
    return None


# (id of a schema node, integers) -> whether anything under it is checked: a 1.6 MeterValues'
# six sampled values (strings and enums only) were walked for nothing, ~17 us a message
_CHECKS: dict[tuple[int, bool], bool] = {}


def _has_checks(schema: dict, root: dict, integers: bool, depth: int = 0) -> bool:
    """Whether `_bad_date_time` can find anything under `schema` (a node of `root`, which the
    library keeps for the process: ids stay valid)."""
    key = (id(schema), integers)
    found = _CHECKS.get(key)
    if found is None:
        found = _CHECKS[key] = _search_checks(schema, root, integers, depth)
    return found


def _search_checks(schema: dict, root: dict, integers: bool, depth: int) -> bool:
    if depth > 32:   # deeper than any OCPP schema (or a loop of $refs): walk it
        return True
    if "$ref" in schema:
        schema = _resolve(root, schema["$ref"])
    if schema.get("format") == "date-time" or (integers and schema.get("type") == "integer"):
        return True
    if any(isinstance(sub, dict) and _has_checks(sub, root, integers, depth + 1)
           for sub in schema.get("properties", {}).values()):
        return True
    items = schema.get("items")
    return isinstance(items, dict) and _has_checks(items, root, integers, depth + 1)


def _resolve(root: dict, ref: str) -> dict:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}
