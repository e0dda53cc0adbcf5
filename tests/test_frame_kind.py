"""What an inbound frame is, read from its first characters (s37-stall: the stations' answers
to our calls are let in past the turn's CPU bound, their own CALLs are not)."""

from __future__ import annotations

import json

from smartcharge.ocpp.frame_kind import ANSWER, OTHER, frame_kind


def test_answers_calls_and_anything_else():
    assert frame_kind(json.dumps([3, "ours-1", {"status": "Accepted"}])) == ANSWER
    assert frame_kind(' [ 4 ,"ours-2","NotSupported","",{}]') == ANSWER
    assert frame_kind(json.dumps([2, "mv-1", "MeterValues", {}])) == "MeterValues"
    assert frame_kind('[2, "a\\"b", "BootNotification", {}]') == "BootNotification"
    # not what an answer or a call starts with: the edge's checks refuse it as before
    for raw in ('[34, "x", {}]', '{"a": 1}', '[2, 5, "Heartbeat", {}]', "", "[5]", "3"):
        assert frame_kind(raw) == OTHER, raw


def test_a_long_frame_is_read_from_its_start_only():
    """A frame of ~1 MB of payload: the action is read, the rest not needed."""
    raw = json.dumps([2, "big", "DataTransfer", {"data": "x" * 1_000_000}])
    assert frame_kind(raw) == "DataTransfer"
