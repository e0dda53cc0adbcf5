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
- The 1.6 requests the library reads with Decimal (SetChargingProfile, RemoteStartTransaction:
  `multipleOf` 0.1 on floats, which a float division gets wrong for 21.4) are compiled without
  their `multipleOf`, and then every number in the payload must be an exact multiple as the
  library computes it (`Decimal(repr(x)) % Decimal("0.1") == 0`; a non-finite number, or one
  the decimal context cannot divide, goes to the library). The payload keeps its floats (the
  library's check replaces them by Decimal; both read as the same float). A simulated station
  checks each SetChargingProfile it is sent: ~2 ms in the library, the station processes'
  biggest cost in a DR event (s22-clstations).
- Not compiled: the 1.6 GetCompositeSchedule answer (read with Decimal: what we do with it
  expects Decimal) and a schema fastjsonschema cannot compile: those take the library's check.
Compiling costs 1-23 ms per schema, once per process, at its first message.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastjsonschema
from ocpp.messages import Call, CallResult, MessageType, get_validator, validate_payload

log = logging.getLogger(__name__)

DRAFT_4 = "http://json-schema.org/draft-04/schema#"
# (message type, action, version) the library checks with Decimal floats: the first two
# compiled with an exact multipleOf, the last one the library's alone
_DECIMAL_COMPILED = {(MessageType.Call, "SetChargingProfile", "1.6"),
                     (MessageType.Call, "RemoteStartTransaction", "1.6")}
_DECIMAL = _DECIMAL_COMPILED | {(MessageType.CallResult, "GetCompositeSchedule", "1.6")}
_compiled: dict[tuple[int, str, str], Callable[[Any], Any] | None] = {}


def _compile(key: tuple[int, str, str]) -> Callable[[Any], Any] | None:
    message_type, action, version = key
    if key in _DECIMAL and key not in _DECIMAL_COMPILED:
        return None
    try:
        # the library caches one validator per schema, with the floats it was first read
        # with: a Decimal schema read with floats would break its own check (Decimal / float)
        schema = get_validator(message_type, action, version, **(
            {"parse_float": Decimal} if key in _DECIMAL else {})).schema
    except (OSError, ValueError):   # no such schema: the library says what that means
        return None
    try:
        if key in _DECIMAL_COMPILED:
            return _with_exact_multiples(schema)
        return fastjsonschema.compile({**schema, "$schema": DRAFT_4}, use_default=False,
                                      use_formats=False)
    except Exception:   # a schema it cannot compile: the library's check, always
        log.warning("schema %s %s %s not compiled: the library checks it", version, action,
                    message_type, exc_info=True)
        return None


def _without_multiple_of(schema: Any, multiples: set) -> Any:
    if isinstance(schema, dict):
        if "multipleOf" in schema:
            multiples.add(schema["multipleOf"])
        return {k: _without_multiple_of(v, multiples) for k, v in schema.items()
                if k != "multipleOf"}
    if isinstance(schema, list):
        return [_without_multiple_of(v, multiples) for v in schema]
    return schema


def _with_exact_multiples(schema: dict) -> Callable[[Any], Any]:
    """The check of a schema the library reads with Decimal: compiled without `multipleOf`,
    then every number of the payload (stricter than the schema: a number it does not bind
    must be a multiple too, or the library decides) a multiple as the library computes it."""
    multiples: set = set()
    stripped = _without_multiple_of(schema, multiples)
    # the library parses the schema's floats with Decimal too: Decimal(repr(0.1)) == 0.1 exactly
    divisors = [Decimal(repr(m)) if isinstance(m, float) else Decimal(m) for m in multiples]
    check = fastjsonschema.compile({**stripped, "$schema": DRAFT_4}, use_default=False,
                                   use_formats=False)

    def numbers_exact(value: Any) -> None:
        if isinstance(value, dict):
            for sub in value.values():
                numbers_exact(sub)
        elif isinstance(value, list):
            for sub in value:
                numbers_exact(sub)
        elif isinstance(value, float | int) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("not finite: the library's check decides")
            # as the library's payload: json.dumps writes repr(x), parsed back as Decimal
            exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            for divisor in divisors:
                if exact % divisor != 0:   # may raise (too big a quotient): the library's
                    raise ValueError("not a multiple: the library's check decides")

    def exact_check(payload: Any) -> Any:
        check(payload)
        numbers_exact(payload)
        return payload

    return exact_check


def compile_all(versions: tuple[str, ...] = ("1.6", "2.0.1")) -> int:
    """Every schema of `versions` the library has, compiled now; the number of schemas. For a
    serving process before it listens (`smartcharge serve`; s35-stall): compiled at its first
    message, a schema held the loop 1-25 ms in the middle of a turn (a set-up's first request of
    a kind, the first station of a version: single steps of 22-25 ms at 5 000 stations), and
    the first messages come in a boot storm. ~0.2-0.5 s once; tests, which build many apps,
    compile what they use as it comes."""
    import ocpp
    root = Path(ocpp.__file__).parent
    count = 0
    for version in versions:
        folder = root / f"v{version.replace('.', '')}" / "schemas"
        for path in sorted(folder.glob("*.json")):
            name = path.stem
            if name.endswith("Response"):
                key = (MessageType.CallResult, name[:-len("Response")], version)
            elif version != "1.6" and name.endswith("Request"):
                key = (MessageType.Call, name[:-len("Request")], version)
            elif version == "1.6":
                key = (MessageType.Call, name, version)
            else:
                continue
            if key not in _compiled:
                _compiled[key] = _compile(key)
            count += 1
    return count


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
