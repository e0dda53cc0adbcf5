"""Which charge point identities the endpoint accepts, and how one appears in a log line.

The identity arrives in the URL (`/ocpp/{identity}`, percent-decoded by aiohttp), so it is
attacker-chosen text. It is checked before anything stores or logs it: at most 48 characters
(the OCPP security whitepaper's identity, OCPP 2.0.1 `identifierString`-sized), visible ASCII
only (0x21-0x7E) and neither ':' (it would split the HTTP Basic user name from the password)
nor '/' (it would split the URL path). Space and control characters are out too: a newline or
an escape sequence in a log line forges entries or rewrites a terminal.
"""

from __future__ import annotations

import re

IDENTITY_MAX_CHARS = 48
_IDENTITY = re.compile(r"^[\x21-\x2e\x30-\x39\x3b-\x7e]{1,%d}$" % IDENTITY_MAX_CHARS)
_LOG_MAX_CHARS = 40   # enough to recognise a station, too short to flood a log line


def is_valid_identity(identity: str) -> bool:
    # fullmatch, not match: `$` would let a trailing newline through
    return _IDENTITY.fullmatch(identity) is not None


def loggable_identity(identity: str) -> str:
    """A refused identity as a log line may show it: escaped (ascii()) and truncated."""
    shown = ascii(identity[:_LOG_MAX_CHARS])
    if len(identity) > _LOG_MAX_CHARS:
        shown += f"... ({len(identity)} characters)"
    return shown
