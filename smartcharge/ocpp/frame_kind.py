"""What an inbound OCPP-J frame is, read from its first characters before it is parsed: an
answer to one of the server's own calls (CALLRESULT `[3, ...]` / CALLERROR `[4, ...]`), or a
station's CALL (`[2, id, action, ...]`, named by its action).

Why (s37-stall, issue 10: "the event loop is never blocked for more than 20 ms"): the server's
inbound budget (`turns.TurnBudget` with `cpu_s`) holds a station's frame out of a turn of the
loop that has spent its CPU bound; an answer is cheap to handle and each one unblocks a set-up
or a round the server is waiting on, so answers are let in past that bound (still counted:
at most `per_turn` frames of any kind a turn). The kind also names the held frames in the
budget's counts (`held_by_kind`). A frame that is not what its first characters say is
refused by the edge's checks (`edge.py`) as before: this reading only decides when.
"""

from __future__ import annotations

import re

ANSWER = "answer"     # a CALLRESULT or a CALLERROR
OTHER = "other"       # anything else: refused or dropped by the edge's checks

# the message type id first, then for a CALL its unique id (a JSON string) and its action
_ANSWER_START = re.compile(r"\s*\[\s*[34]\s*,")
_CALL_ACTION = re.compile(r'\s*\[\s*2\s*,\s*"(?:[^"\\]|\\.){0,64}"\s*,\s*"([A-Za-z0-9]{1,64})"')


def frame_kind(raw: str) -> str:
    """ANSWER, a CALL's action (e.g. "MeterValues"), or OTHER - from the frame's start only (at
    most a few hundred characters read, whatever its length)."""
    if _ANSWER_START.match(raw):
        return ANSWER
    call = _CALL_ACTION.match(raw)
    return call.group(1) if call else OTHER


__all__ = ["ANSWER", "OTHER", "frame_kind"]
