"""A station whose set-up timed out is set up again on the same connection.

Its set-up (capabilities, then its fail-safe defaults) went out once per connection: a
GetConfiguration answered late (a station busy under load) postponed it, and nothing set the
station up again until it reconnected or rebooted - it held no fail-safe default, and had we
vanished its cars could have drawn its full maximum (44 kW of limits on a 22 kW grid in
test_dispatch_trust under the suite's load). Now a postponed set-up is retried on the same
connection (`site/failsafe.py`, `_retry_setup`).

A scripted 1.6 station over a real WebSocket (the `ocpp` library) answers the GetConfiguration
of the set-ups that go out before the server has given up twice - the connection's and its
boot's, each after the call timeout - late, then everything at once; another loses its first
TxDefaultProfile (no answer, nothing installed)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from smartcharge.appkeys import REGISTRY
from tests.scripted_16 import TakesProfiles, one_station_site
from tests.site_e2e import wait_until

GIVEN_UP = 2   # set-ups given up before it answers: the connection's and its boot's


def postponed(caplog) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith("station CP1: setup postponed"))


def late_station(caplog):
    class LateConfiguration(TakesProfiles):
        """Answers GetConfiguration only once the server gave up `GIVEN_UP` set-ups."""

        @on(Action.get_configuration)
        async def get_configuration(self, key=None, **_):
            while postponed(caplog) < GIVEN_UP:   # (its other messages wait behind it)
                await asyncio.sleep(0.01)
            return call_result.GetConfiguration(configuration_key=[], unknown_key=key or None)
    return LateConfiguration


def default_held(station, control) -> bool:
    """The station accepted a TxDefaultProfile on connector 1, and the server knows it holds it."""
    return any(p["connector_id"] == 1 and p["charging_profile_purpose"] == "TxDefaultProfile"
               for _, p in station.accepted) and 1 in control.default_layer


@asynccontextmanager
async def booted(tmp_path, caplog, station_class, name: str):
    """The one-station site served with 2 s call timeouts and no retries, `station_class`
    booted on it: (server, station, its link)."""
    caplog.set_level(logging.INFO, logger="smartcharge.site.dispatch")
    async with one_station_site(tmp_path, station_class, name,
                                {"call_timeout_s": 2.0, "retries": 0}) as (_, _, server, station):
        link = server.app[REGISTRY].get("CP1")
        assert link is not None
        yield server, station, link


async def test_a_setup_given_up_is_retried_on_the_same_connection(tmp_path, caplog):
    async with booted(tmp_path, caplog, late_station(caplog), "late") as (server, station, link):
        await wait_until(lambda: postponed(caplog) >= GIVEN_UP, 20, "its set-ups given up")
        control = server.dispatcher.stations["CP1"]
        await wait_until(lambda: default_held(station, control), 20,
                         "its fail-safe default taken")
        # on the connection it had: never closed, never replaced
        assert server.app[REGISTRY].get("CP1") is link
        assert control.setup_link is link


class LosesFirstDefault(TakesProfiles):
    """Never gets its first TxDefaultProfile (the frame lost on the way): no answer, nothing
    installed; every later frame is handled."""

    lost = 0

    async def route_message(self, raw_msg):
        if '"TxDefaultProfile"' in raw_msg and '"SetChargingProfile"' in raw_msg \
                and not self.lost:
            self.lost += 1
            return None
        return await super().route_message(raw_msg)


async def test_a_default_left_unanswered_at_setup_is_sent_again(tmp_path, caplog):
    """A set-up whose fail-safe default went unanswered (after its retries) is tried again on
    the same connection: before, the default counted as sent (`default_sent`) and nothing sent
    it again until the limits moved - the station held none."""
    async with booted(tmp_path, caplog, LosesFirstDefault, "lossy") as (server, station, link):
        control = server.dispatcher.stations["CP1"]
        await wait_until(lambda: station.lost, 20, "its first default lost")
        await wait_until(lambda: default_held(station, control), 20,
                         "its fail-safe default taken")
        assert server.app[REGISTRY].get("CP1") is link   # never closed, never replaced
