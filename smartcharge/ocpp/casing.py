"""camelCase keys to snake_case, as the `ocpp` library converts them, each key's conversion
remembered.

The library's `camel_to_snake_case` runs two regular-expression substitutions per key, at every
level: ~110 us of a 1.6 MeterValues with six sampled values (issue 10), for the same few dozen
keys every time. `snake_case_keys` gives the same result (a test compares them on every
payload shape a station sends) and asks the library once per key. Keys are the schemas' (a
payload is checked before it is converted), but 2.0.1's `customData` may carry any: at most
`KEYS_KEPT` conversions are remembered, each of a key of at most `KEY_CHARS_KEPT` characters
(a station's invented megabyte-long keys are converted, never kept).
"""

from __future__ import annotations

from typing import Any

from ocpp.charge_point import camel_to_snake_case

KEYS_KEPT = 4096
KEY_CHARS_KEPT = 64     # the schemas' longest property names are ~30 characters
_snake: dict[str, str] = {}


def snake_key(key: str) -> str:
    try:
        return _snake[key]
    except KeyError:
        pass
    converted = next(iter(camel_to_snake_case({key: None})))
    if len(_snake) < KEYS_KEPT and len(key) <= KEY_CHARS_KEPT:
        _snake[key] = converted
    return converted


def snake_case_keys(data: Any) -> Any:
    """`camel_to_snake_case(data)`: every key of every object inside, converted.

    Loops, not comprehensions: on Python 3.11 a comprehension is a frame of its own, and two
    frames per level of nesting made a payload the library converts a RecursionError."""
    if isinstance(data, dict):
        converted = {}
        for key, value in data.items():
            converted[snake_key(key)] = snake_case_keys(value)
        return converted
    if isinstance(data, list):
        items = []
        for value in data:
            items.append(snake_case_keys(value))
        return items
    return data
