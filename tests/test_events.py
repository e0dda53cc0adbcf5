"""The event bus: synchronous fan-out; a failing subscriber is logged, never breaks the sender."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from smartcharge.events import EventBus, StationConnected

EVENT = StationConnected("CP1", datetime(2026, 1, 1, tzinfo=UTC), "ocpp1.6")


def test_failing_subscriber_is_logged_and_the_others_still_hear(caplog):
    bus = EventBus()
    heard: list = []

    def broken(event):
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(heard.append)
    with caplog.at_level(logging.ERROR):
        bus.publish(EVENT)
    assert heard == [EVENT]
    assert "StationConnected" in caplog.text and "CP1" in caplog.text


def test_unsubscribe_stops_delivery():
    bus = EventBus()
    heard: list = []
    unsubscribe = bus.subscribe(heard.append)
    bus.publish(EVENT)
    unsubscribe()
    unsubscribe()                 # twice is harmless
    bus.publish(EVENT)
    assert heard == [EVENT]
