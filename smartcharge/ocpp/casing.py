"""camelCase keys to snake_case, as the `ocpp` library converts them, each key's conversion
remembered.

The library's `camel_to_snake_case` runs two regular-expression substitutions per key, at every
level: ~110 us of a 1.6 MeterValues with six sampled values (issue 10), for the same few dozen
keys every time. `snake_case_keys` gives the same result (a test compares them on every
payload shape a station sends) and asks the library once per key. Keys are the schemas' (a
payload is checked before it is converted), but 2.0.1's `customData` may carry any: at most
`KEYS_KEPT` conversions are remembered.
"""

from __future__ import annotations

from typing import Any

from ocpp.charge_point import camel_to_snake_case

KEYS_KEPT = 4096
_snake: dict[str, str] = {}


def snake_key(key: str) -> str:
    try:
        return _snake[key]
    except KeyError:
        pass
    converted = next(iter(camel_to_snake_case({key: None})))
    if len(_snake) < KEYS_KEPT:
        _snake[key] = converted
    return converted


def snake_case_keys(data: Any) -> Any:
    """`camel_to_snake_case(data)`: every key of every object inside, converted."""
    if isinstance(data, dict):
        return {snake_key(key): snake_case_keys(value) for key, value in data.items()}
    if isinstance(data, list):
        return [snake_case_keys(value) for value in data]
    return data
