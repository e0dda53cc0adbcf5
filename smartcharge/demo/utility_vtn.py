"""The demo's utility as utilities really send demand response: an OpenADR 2.0b VTN
(openleadr's `OpenADRServer`) on 127.0.0.1 (only the site in this process talks to it), and
the site file's program that makes the demo site its VEN. The evening event is a LOAD_DISPATCH
setpoint in kW.

The demo's day is simulated, usually in the wall clock's past, and openleadr's VTN queue drops
an event the wall clock says is over before it delivers it. So the demo VTN hands its events out
itself (`on_poll`, once each). openleadr's VEN side then sends no oadrCreatedEvent for an event
its wall clock calls completed; smartcharge stores and follows it all the same, as DR event
`openadr:demo-utility/<event>`. On a real clock (a real day) the opt-in goes back as usual.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import replace
from datetime import timedelta

from openleadr import OpenADRServer, objects

from smartcharge.model import OpenAdrProgram, Site

PROGRAM = "demo-utility"
VEN_ID = "demo-site-ven"
logging.getLogger("openleadr").setLevel(logging.WARNING)


class UtilityVtn:
    def __init__(self, host: str) -> None:
        self.host = host
        self.opts: dict[str, str] = {}
        self.delivered: set[str] = set()
        self.server = OpenADRServer(vtn_id="DEMO-UTILITY", http_host=host, http_port=0,
                                    requested_poll_freq=timedelta(seconds=1),
                                    verify_message_signatures=False, show_fingerprint=False,
                                    ven_lookup=self._lookup)
        self.server.add_handler("on_create_party_registration",
                                lambda info: (VEN_ID, "demo-registration"))
        self.server.add_handler("on_poll", self._on_poll)
        self.server.add_handler("on_request_event", lambda ven_id: None)
        self.server.add_handler("on_created_event", self._opted)
        self.server.add_handler("on_register_report", self._on_register_report)
        self.load_reports_kw: list[float] = []
        self._pending: list[objects.Event] = []
        self.url = ""

    @staticmethod
    def _lookup(ven_id: str) -> dict:
        return {"ven_id": VEN_ID, "ven_name": "demo-site", "fingerprint": None,
                "registration_id": "demo-registration"}

    async def start(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):   # openleadr prints a banner
            await self.server.run()
        port = self.server.app_runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}/OpenADR2/Simple/2.0b"

    async def stop(self) -> None:
        await self.server.stop()

    def program(self) -> OpenAdrProgram:
        return OpenAdrProgram(program=PROGRAM, version="2.0b", vtn_url=self.url,
                              ven_name="demo-site", poll_interval_s=1.0,
                              randomize_start=False)

    def site_with_program(self, site: Site) -> Site:
        return replace(site, openadr=site.openadr + (self.program(),))

    def send(self, event_id: str, start, end, limit_w: float) -> None:
        """A LOAD_DISPATCH setpoint of limit_w (sent in kW) from start to end."""
        measurement = objects.Measurement(name="powerReal", description="RealPower", unit="W",
                                          scale="k", power_attributes=objects.PowerAttributes(
                                              hertz=50, voltage=230, ac=True))
        duration = end - start
        event = objects.Event(
            event_descriptor=objects.EventDescriptor(
                event_id=event_id, modification_number=0, market_context="http://demo.utility",
                event_status="far", created_date_time=start, priority=1),
            active_period=objects.ActivePeriod(dtstart=start, duration=duration),
            event_signals=[objects.EventSignal(
                intervals=[objects.Interval(dtstart=start, duration=duration,
                                            signal_payload=limit_w / 1000.0)],
                signal_name="LOAD_DISPATCH", signal_type="setpoint", signal_id=event_id + "-1",
                measurement=measurement)],
            targets=[{"ven_id": VEN_ID}], response_required="always")
        event.event_descriptor.event_status = "far"   # not what the wall clock says of the day
        self._pending.append(event)

    def _on_register_report(self, ven_id, resource_id, measurement, unit, scale,
                            min_sampling_interval, max_sampling_interval):
        """The site's metered load, every 5 real seconds (the limit report is not asked for)."""
        if resource_id != "site-load":
            return None
        return (lambda values: self.load_reports_kw.extend(v for _, v in values),
                timedelta(seconds=5))

    def _on_poll(self, ven_id: str):
        if not self._pending:
            return None
        event = self._pending.pop(0)
        self.delivered.add(event.event_descriptor.event_id)
        return event

    def _opted(self, ven_id: str, event_id: str, opt_type: str) -> None:
        self.opts[event_id] = opt_type


def site_event_id(event_id: str) -> str:
    return f"openadr:{PROGRAM}/{event_id}"
