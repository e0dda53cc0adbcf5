"""The schema check of an OCPP payload, compiled once per schema (issue 10).

The `ocpp` library checks payloads with jsonschema's `Draft4Validator`, which walks the schema
anew for every message: ~270 us for a 1.6 MeterValues with six sampled values, the biggest
single cost of an inbound message at 5 000 stations. The same schema (the library's own file,
read through its `get_validator`) compiled to Python by fastjsonschema checks it in ~13 us.

The compiled check only ever says "valid": a payload it does not pass goes to the library's
check, which raises the error it always raised (our edge names it per version) or passes it.
So what a station may send is decided as before; a test compares the two on every schema a
station's message or our answer uses, with valid payloads and many broken ones.
- Draft 4, as the library checks (the 2.0.1 files say draft 6, which would take 1.0 for an
  integer); `format` is not checked, as the library does not (the edge checks date-times);
  no defaults are filled in (fastjsonschema would change the payload).
- Not compiled: the 1.6 payloads the library reads with Decimal (SetChargingProfile and
  RemoteStartTransaction requests, GetCompositeSchedule answers: `multipleOf` 0.1 on floats),
  and a schema fastjsonschema cannot compile: those always take the library's check.
Compiling costs 1-23 ms per schema, once per process, at its first message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import fastjsonschema
from ocpp.messages import Call, CallResult, MessageType, get_validator, validate_payload

log = logging.getLogger(__name__)

DRAFT_4 = "http://json-schema.org/draft-04/schema#"
# (message type, action, version) the library checks with Decimal floats
_DECIMAL = {(MessageType.Call, "SetChargingProfile", "1.6"),
            (MessageType.Call, "RemoteStartTransaction", "1.6"),
            (MessageType.CallResult, "GetCompositeSchedule", "1.6")}
_compiled: dict[tuple[int, str, str], Callable[[Any], Any] | None] = {}


def _compile(key: tuple[int, str, str]) -> Callable[[Any], Any] | None:
    message_type, action, version = key
    if key in _DECIMAL:
        return None
    try:
        schema = get_validator(message_type, action, version).schema
    except (OSError, ValueError):   # no such schema: the library says what that means
        return None
    try:
        return fastjsonschema.compile({**schema, "$schema": DRAFT_4}, use_default=False,
                                      use_formats=False)
    except Exception:   # a schema it cannot compile: the library's check, always
        log.warning("schema %s %s %s not compiled: the library checks it", version, action,
                    message_type, exc_info=True)
        return None


def passes(message_type: int, action: str, version: str, payload: Any) -> bool:
    """True when the compiled schema passes `payload`; False: not known (ask the library)."""
    key = (message_type, action, version)
    try:
        check = _compiled[key]
    except KeyError:
        check = _compiled[key] = _compile(key)
    if check is None:
        return False
    try:
        check(payload)
    except Exception:   # refused (JsonSchemaException), or anything unforeseen: the library
        return False
    return True


async def validate(message: Call | CallResult, version: str) -> None:
    """The library's `validate_payload` (raises its OCPPError for a payload that breaks the
    schema), with the compiled check first."""
    if not passes(message.message_type_id, message.action, version, message.payload):
        await validate_payload(message, version)
